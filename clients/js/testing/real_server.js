// Starts the real `portcullis serve` for the tests, with a TCP and a WebSocket
// listener on free loopback ports and a fresh temporary database, and reads
// its stdout lines: `listening on IP:PORT`, then `listening on ws://IP:PORT`
// (docs/cli.md). A binary that has no WebSocket listener (it refuses
// `--ws-listen`, or prints no ws line) gives a reason to skip instead.
//
// `startBridgedServer` runs it on TCP only, behind a WebSocket-to-TCP
// bridge served by the test, so the client's session tests
// meet the real server even before it has WebSocket.
//
// The binary: $PORTCULLIS_BIN, else target/debug/portcullis of this checkout.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { startWsServer } from "./ws_server.js";

/** The longest the server may take to print its listening lines. */
const START_TIMEOUT_MS = 60_000;
/** How long to wait for the ws line once the TCP line is out. */
const WS_LINE_TIMEOUT_MS = 5_000;
/** How long the server may take to exit once asked. */
const STOP_TIMEOUT_MS = 15_000;

/** The binary to run. */
export function binaryPath() {
  if (process.env.PORTCULLIS_BIN) return process.env.PORTCULLIS_BIN;
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
  return join(root, "target", "debug", "portcullis");
}

/**
 * @typedef {object} RealServer
 * @property {string} url the WebSocket URL, `ws://IP:PORT/`
 * @property {string} tcp the TCP address, `IP:PORT`
 * @property {string[]} stdout the lines printed so far
 * @property {() => Promise<void>} stop ends the server and removes its database
 */

/**
 * Starts the server with `extraArgs` after the listeners and database.
 * Resolves with the server, or with `{skip}` and a one-line reason when there
 * is no binary or it has no WebSocket listener yet.
 * @param {string[]} [extraArgs]
 * @returns {Promise<RealServer | {skip: string}>}
 */
export function startRealServer(extraArgs = []) {
  return start(extraArgs, true);
}

/**
 * Starts the server on TCP only and puts `bridgeTcp` in front of it, so the
 * client meets the real server's sessions through a WebSocket the test
 * serves (for a binary without a WebSocket listener). Resolves with `{skip}`
 * only when there is no binary or it does not start.
 * @param {string[]} [extraArgs]
 * @returns {Promise<RealServer | {skip: string}>}
 */
export async function startBridgedServer(extraArgs = []) {
  const plain = await start(extraArgs, false);
  if ("skip" in plain) return plain;
  const bridge = await bridgeTcp(plain.tcp);
  return {
    ...plain,
    url: bridge.url,
    stop: async () => {
      await bridge.close();
      await plain.stop();
    },
  };
}

/**
 * A WebSocket server that forwards every connection to a new TCP connection
 * to `tcp` (`IP:PORT`): one text message ↔ one line (docs/protocol.md §1), the
 * close of either side closes the other (with status 1000 and, after a
 * `disconnected`, its reason, as §1.1 says the server does).
 * @param {string} tcp
 * @returns {ReturnType<typeof startWsServer>}
 */
export function bridgeTcp(tcp) {
  const at = tcp.lastIndexOf(":");
  const host = tcp.slice(0, at);
  const port = Number(tcp.slice(at + 1));
  return startWsServer((ws) => {
    const socket = connect({ host, port });
    socket.setNoDelay(true);
    let reason = "";
    /** @type {string[]} */
    const early = [];
    let open = false;
    socket.once("connect", () => {
      open = true;
      for (const text of early) socket.write(`${text}\n`);
    });
    ws.onmessage = (text) => {
      if (open) socket.write(`${text}\n`);
      else early.push(text);
    };
    ws.onclose = () => socket.end();
    createInterface({ input: socket }).on("line", (line) => {
      try {
        const message = JSON.parse(line);
        if (message?.method === "disconnected" && typeof message.params?.reason === "string") reason = message.params.reason;
      } catch {
        // Not JSON: forwarded as is.
      }
      ws.send(line);
    });
    socket.on("close", () => ws.close(1000, reason));
    socket.on("error", () => ws.close(1000, reason));
  });
}

/**
 * @param {string[]} extraArgs
 * @param {boolean} withWs whether to ask for the WebSocket listener
 * @returns {Promise<RealServer | {skip: string}>}
 */
async function start(extraArgs, withWs) {
  const bin = binaryPath();
  if (!existsSync(bin)) return { skip: `no server binary at ${bin} (run \`cargo build\`, or set PORTCULLIS_BIN)` };
  const dir = mkdtempSync(join(tmpdir(), "portcullis-js-"));
  const args = [
    "serve",
    "--listen", "127.0.0.1:0",
    ...(withWs ? ["--ws-listen", "127.0.0.1:0"] : []),
    "--db", join(dir, "test.db"),
    "--argon2-memory-kib", "8192",
    "--argon2-iterations", "1",
    "--log", "warn",
    "--stop-on-stdin-eof",
    ...extraArgs,
  ];
  const child = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"] });
  /** @type {string[]} */
  const stdout = [];
  /** @type {string[]} */
  const stderr = [];
  createInterface({ input: /** @type {import("node:stream").Readable} */ (child.stderr) }).on("line", (line) => stderr.push(line));
  const exited = new Promise((done) => child.once("exit", (code, signal) => done({ code, signal })));
  const removeDir = () => rmSync(dir, { recursive: true, force: true });

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      /** @type {ReturnType<typeof setTimeout>|undefined} */
      let timer;
      const late = new Promise((done) => {
        timer = setTimeout(() => {
          child.kill("SIGKILL");
          done(undefined);
        }, STOP_TIMEOUT_MS);
      });
      await Promise.race([exited, late]);
      clearTimeout(timer);
      await exited;
    }
    removeDir();
  };

  /** @type {Promise<{tcp: string, ws: string} | {skip: string}>} */
  const ready = new Promise((done) => {
    let tcp = "";
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    let wsTimer;
    const startTimer = setTimeout(
      () => done({ skip: `the server printed no listening line within ${START_TIMEOUT_MS} ms` }),
      START_TIMEOUT_MS,
    );
    const finish = (/** @type {any} */ outcome) => {
      clearTimeout(startTimer);
      clearTimeout(wsTimer);
      done(outcome);
    };
    createInterface({ input: /** @type {import("node:stream").Readable} */ (child.stdout) }).on("line", (line) => {
      stdout.push(line);
      const ws = /^listening on (wss?:\/\/\S+)$/.exec(line);
      if (ws) {
        finish({ tcp, ws: ws[1] });
      } else if (line.startsWith("listening on ") && !tcp) {
        tcp = line.slice("listening on ".length);
        if (!withWs) {
          finish({ tcp, ws: "" });
          return;
        }
        wsTimer = setTimeout(
          () => finish({ skip: "the server printed no `listening on ws://` line: this binary has no WebSocket listener yet" }),
          WS_LINE_TIMEOUT_MS,
        );
      }
    });
    exited.then((/** @type {any} */ status) => {
      const said = stderr.find((line) => line.trim() !== "") ?? `exit ${status.code ?? status.signal}`;
      const why = withWs ? ": this binary has no WebSocket listener yet" : "";
      finish({ skip: `the server exited at start (${said.trim()})${why}` });
    });
  });

  const outcome = await ready;
  if ("skip" in outcome) {
    await stop();
    return outcome;
  }
  const url = outcome.ws === "" || outcome.ws.endsWith("/") ? outcome.ws : `${outcome.ws}/`;
  return { url, tcp: outcome.tcp, stdout, stop };
}
