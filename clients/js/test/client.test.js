// The client's behaviour (docs/protocol.md §2, §5–§7) against the in-memory fake
// server and against scripted WebSocket servers: no real server needed.
// Run: node --experimental-websocket --test clients/js/test/

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Client, ErrorCode, PortcullisError, errorName } from "../portcullis.js";
import { startFakePortcullis } from "../testing/fake_portcullis.js";
import { startWsServer } from "../testing/ws_server.js";

/** The longest any single wait in these tests may take. */
const WAIT_MS = 5000;

/**
 * Resolves with `promise`, or rejects after `ms` with `what` in the message.
 * @template T
 * @param {Promise<T>} promise
 * @param {string} what
 * @param {number} [ms]
 * @returns {Promise<T>}
 */
function within(promise, what, ms = WAIT_MS) {
  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Asserts that `promise` rejects with a PortcullisError of `kind` (and `code`).
 * @param {Promise<unknown>} promise
 * @param {string} kind
 * @param {number} [code]
 * @returns {Promise<PortcullisError>}
 */
async function rejectsWith(promise, kind, code) {
  try {
    await within(promise, `a ${kind} error`);
  } catch (error) {
    assert.ok(error instanceof PortcullisError, `expected a PortcullisError, got ${error}`);
    assert.equal(error.kind, kind, `kind of ${error.message}`);
    if (code !== undefined) assert.equal(error.code, code, `code of ${error.message}`);
    return error;
  }
  assert.fail(`expected a ${kind} error, got a result`);
}

describe("against the fake server", () => {
  /** @type {Awaited<ReturnType<typeof startFakePortcullis>>} */
  let fake;
  before(async () => {
    fake = await startFakePortcullis({ kickSaveMs: 2000 });
  });
  after(() => fake.close());

  /** @param {import("../portcullis.js").ClientOptions} [options] */
  const connect = (options) => within(Client.connect(fake.url, options), "connect");

  test("login holds the token and logout drops it; the connection stays open", async () => {
    const client = await connect();
    const login = await client.login("NETEASE1", "123");
    assert.equal(login.account, "netease1");
    assert.match(login.token, /^[0-9a-f]{64}$/);
    assert.equal(client.token, login.token);
    assert.equal(client.account, "netease1");
    await client.logout();
    assert.equal(client.token, null);
    assert.equal(typeof (await client.ping()), "number");
    await rejectsWith(client.userdataLoad(), "rpc", ErrorCode.NOT_LOGGED_IN);
    client.close();
  });

  test("a second login on the same connection uses the held token, not the password", async () => {
    const client = await connect();
    const first = await client.login("netease2", "123");
    const before = fake.state.received.length;
    const again = await client.login("netease2", "not-the-password");
    assert.equal(again.token, first.token);
    const sent = JSON.parse(fake.state.received[before]);
    assert.deepEqual(sent.params, { token: first.token }, "the second login sends only the token");
    client.close();
  });

  test("user data saved is loaded back, with version and saved_at", async () => {
    const client = await connect();
    await client.login("netease3", "123");
    const save = await client.userdataSave({ level: 3, items: ["sword"] });
    assert.match(save.saved_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const load = await client.userdataLoad();
    assert.deepEqual(load, { data: { level: 3, items: ["sword"] }, version: save.version, saved_at: save.saved_at });
    client.close();
  });

  test("server errors carry their code, name and data", async () => {
    const client = await connect();
    await client.login("netease1", "123");
    const error = await rejectsWith(client.userdataSave(/** @type {any} */ ("not an object")), "rpc", -32602);
    assert.deepEqual(error.data, { field: "data" });
    assert.equal(error.codeName, "INVALID_PARAMS");
    assert.equal(errorName(1003), "TOKEN_INVALID");
    assert.equal(errorName(42), "error 42");
    await rejectsWith(client.call("no_such_method"), "rpc", ErrorCode.METHOD_NOT_FOUND);
    client.close();
  });

  test("the RPC timeout closes the connection and fails every pending call", async () => {
    const client = await connect({ rpcTimeoutMs: 200 });
    const closed = client.next("close");
    const silent = client.call("test_silent");
    const other = client.call("test_silent");
    await rejectsWith(silent, "timeout");
    await rejectsWith(other, "timeout");
    const info = await within(closed, "the close event");
    assert.equal(info.cause, "timeout");
    assert.ok(client.isClosed);
    await rejectsWith(client.ping(), "closed");
  });

  test("on kicked, the client saves its current data by itself, and the new login loads it", async () => {
    const a = await connect();
    const b = await connect();
    await a.login("netease1", "123");
    a.setSaveData({ stage: 1 });
    a.setSaveProvider(() => ({ stage: 9 }));
    /** @type {string[]} */
    const seen = [];
    a.on("notification", ({ method }) => seen.push(method));
    const kicked = a.next("kicked");
    const kickSave = a.next("kicksave");
    const closed = a.closed;
    const bLogin = b.login("netease1", "123");
    const kick = await within(kicked, "kicked");
    assert.equal(kick.reason, "duplicate_login");
    const saved = await within(kickSave, "the automatic save");
    assert.ok(saved.ok, `automatic save failed: ${saved.error}`);
    const info = await within(closed, "A's close");
    assert.equal(info.reason, "duplicate_login");
    assert.equal(a.token, null, "the token dies with the connection");
    await within(bLogin, "B's login");
    const load = await b.userdataLoad();
    assert.deepEqual(load.data, { stage: 9 });
    assert.equal(load.version, saved.result.version);
    assert.deepEqual(seen, ["kicked", "disconnected"]);
    b.close();
  });

  test("a kick without save data sends no save", async () => {
    const a = await connect();
    const b = await connect();
    await a.login("netease2", "123");
    a.setSaveData({ x: 1 });
    a.clearSaveData();
    let saves = 0;
    a.on("kicksave", () => saves++);
    const before = fake.state.received.length;
    await within(b.login("netease2", "123"), "B's login");
    await within(a.closed, "A's close");
    assert.equal(saves, 0);
    const sent = fake.state.received.slice(before).map((text) => JSON.parse(text).method);
    assert.ok(!sent.includes("userdata_save"), `sent ${sent}`);
    b.close();
  });

  test("disconnect returns the server's reason; the socket closes 1000 with it", async () => {
    const client = await connect();
    assert.equal(await within(client.disconnect(), "disconnect"), "client_request");
    const info = await client.closed;
    assert.equal(info.cause, "eof");
    assert.equal(info.reason, "client_request");
    assert.equal(info.code, 1000);
    assert.equal(info.wsReason, "client_request");
    const error = await rejectsWith(client.ping(), "closed");
    assert.equal(error.reason, "client_request");
  });

  test("it never reconnects: after the server closes, calls fail and no new connection is opened", async () => {
    const client = await connect();
    await client.login("netease3", "123");
    const connectionsBefore = fake.state.nextConn;
    client.notify("test_close", { notify: "admin", reason: "admin" });
    const info = await within(client.closed, "the close");
    assert.equal(info.reason, "admin");
    assert.equal(client.token, null);
    await rejectsWith(client.ping(), "closed");
    assert.throws(() => client.notify("ping"), PortcullisError);
    assert.equal(fake.state.nextConn, connectionsBefore, "no connection was opened");
  });

  test("server notifications are events, in arrival order", async () => {
    const client = await connect();
    /** @type {any[]} */
    const got = [];
    const off = client.on("notification", (n) => got.push(n));
    client.on("notification", () => {
      throw new Error("a listener that throws does not stop the others");
    });
    const consoleError = console.error;
    /** @type {unknown[]} */
    const reported = [];
    console.error = (...args) => reported.push(args);
    await client.call("test_notify", { method: "arena_state", params: { tick: 1 } });
    await client.call("test_notify", { method: "group_message", params: { text: "hi" } });
    off();
    await client.call("test_notify", { method: "arena_state", params: { tick: 2 } });
    console.error = consoleError;
    assert.equal(reported.length, 3, "each throw is reported");
    assert.deepEqual(got, [
      { method: "arena_state", params: { tick: 1 } },
      { method: "group_message", params: { text: "hi" } },
    ]);
    client.close();
  });

  test("a batch is one frame; its answers come back per entry", async () => {
    const client = await connect();
    const before = fake.state.received.length;
    const outcomes = await client.batch([
      { method: "ping" },
      { method: "userdata_load" },
      { method: "ping", notify: true },
      { method: "no_such_method" },
    ]);
    assert.equal(outcomes.length, 4);
    assert.ok(outcomes[0].ok && typeof outcomes[0].result.server_time_ms === "number");
    assert.ok(!outcomes[1].ok && outcomes[1].error.code === ErrorCode.NOT_LOGGED_IN);
    assert.deepEqual(outcomes[2], { ok: true, result: undefined });
    assert.ok(!outcomes[3].ok && outcomes[3].error.code === ErrorCode.METHOD_NOT_FOUND);
    const frames = fake.state.received.slice(before);
    assert.equal(frames.length, 1, "one frame");
    const batch = JSON.parse(frames[0]);
    assert.equal(batch.length, 4);
    assert.ok(!Object.hasOwn(batch[2], "id"), "the notify entry has no id");
    assert.deepEqual(await client.batch([]), []);
    client.close();
  });

  test("an answer with id null is an unmatched event; the connection stays open", async () => {
    const client = await connect();
    const unmatched = client.next("unmatched");
    client.sendRaw("{not json");
    const message = await within(unmatched, "the -32700 answer");
    assert.equal(message.id, null);
    assert.equal(message.error.code, ErrorCode.PARSE_ERROR);
    await client.ping();
    client.close();
  });

  test("a message that is not JSON-RPC closes the connection with a protocol error", async () => {
    const client = await connect();
    const pending = client.call("test_silent");
    client.notify("test_send_raw", { text: "this is not json" });
    await rejectsWith(pending, "protocol");
    const info = await client.closed;
    assert.equal(info.cause, "protocol");
    assert.match(info.detail ?? "", /invalid JSON/);
  });

  test("a binary message closes the connection with a protocol error", async () => {
    const client = await connect();
    client.notify("test_send_binary");
    const info = await within(client.closed, "the close");
    assert.equal(info.cause, "protocol");
  });

  test("close() fails pending calls with kind closed and tells the server (close 1000)", async () => {
    const client = await connect();
    const count = fake.connections.size;
    const pending = client.call("test_silent");
    client.close();
    await rejectsWith(pending, "closed");
    assert.equal((await client.closed).cause, "local");
    // The server sees the close frame and the connection go.
    const deadline = Date.now() + WAIT_MS;
    while (fake.connections.size >= count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(fake.connections.size < count, "the server saw the connection close");
  });
});

describe("against scripted servers", () => {
  test("responses are matched by id whatever their order", async () => {
    /** @type {any[]} */
    const requests = [];
    const server = await startWsServer((ws) => {
      ws.onmessage = (text) => {
        requests.push(JSON.parse(text));
        if (requests.length === 3) {
          for (const request of [...requests].reverse()) {
            ws.send(JSON.stringify({ jsonrpc: "2.0", id: request.id, result: { echo: request.params.n } }));
          }
        }
      };
    });
    try {
      const client = await within(Client.connect(server.url), "connect");
      const results = await within(
        Promise.all([client.call("echo", { n: 1 }), client.call("echo", { n: 2 }), client.call("echo", { n: 3 })]),
        "the answers",
      );
      assert.deepEqual(results, [{ echo: 1 }, { echo: 2 }, { echo: 3 }]);
      assert.deepEqual(
        requests.map((r) => r.id),
        [1, 2, 3],
      );
      client.close();
    } finally {
      await server.close();
    }
  });

  test("login falls back to the password when the held token is refused", async () => {
    /** @type {any[]} */
    const logins = [];
    const server = await startWsServer((ws) => {
      ws.onmessage = (text) => {
        const request = JSON.parse(text);
        logins.push(request.params);
        const token = String(logins.length).repeat(64);
        const reply =
          request.params.token !== undefined
            ? { jsonrpc: "2.0", id: request.id, error: { code: 1003, message: "token invalid" } }
            : { jsonrpc: "2.0", id: request.id, result: { account: "Player1", token } };
        ws.send(JSON.stringify(reply));
      };
    });
    try {
      const client = await within(Client.connect(server.url), "connect");
      const first = await client.login("player1", "pw");
      assert.equal(first.token, "1".repeat(64));
      const second = await within(client.login("PLAYER1", "pw"), "the second login");
      assert.equal(second.token, "3".repeat(64));
      assert.deepEqual(logins, [
        { account: "player1", password: "pw" },
        { token: "1".repeat(64) },
        { account: "PLAYER1", password: "pw" },
      ]);
      assert.equal(client.token, "3".repeat(64));
      client.close();
    } finally {
      await server.close();
    }
  });

  test("a token is used only for its own account", async () => {
    /** @type {any[]} */
    const logins = [];
    const server = await startWsServer((ws) => {
      ws.onmessage = (text) => {
        const request = JSON.parse(text);
        logins.push(request.params);
        ws.send(JSON.stringify({ jsonrpc: "2.0", id: request.id, result: { account: request.params.account, token: "a".repeat(64) } }));
      };
    });
    try {
      const client = await within(Client.connect(server.url), "connect");
      await client.login("alice1", "pw");
      await client.login("bobby1", "pw");
      assert.deepEqual(logins[1], { account: "bobby1", password: "pw" });
      client.close();
    } finally {
      await server.close();
    }
  });

  test("fragmented and long messages from the client reach the server whole", async () => {
    let got = "";
    const server = await startWsServer((ws) => {
      ws.onmessage = (text) => {
        got = text;
        const request = JSON.parse(text);
        ws.send(JSON.stringify({ jsonrpc: "2.0", id: request.id, result: { length: text.length } }));
      };
    });
    try {
      const client = await within(Client.connect(server.url), "connect");
      const big = "x".repeat(70_000);
      const result = await within(client.call("big", { big }), "the answer");
      assert.equal(result.length, got.length);
      assert.equal(JSON.parse(got).params.big, big);
      client.close();
    } finally {
      await server.close();
    }
  });

  test("connecting to a port with no server fails with kind io", async () => {
    const server = await startWsServer(() => {});
    const url = server.url;
    await server.close();
    await rejectsWith(Client.connect(url, { connectTimeoutMs: WAIT_MS }), "io");
  });

  test("without a WebSocket class, connect says how to get one", async () => {
    const saved = globalThis.WebSocket;
    // @ts-ignore: removed on purpose
    globalThis.WebSocket = undefined;
    try {
      await assert.rejects(Client.connect("ws://127.0.0.1:1/"), /--experimental-websocket/);
    } finally {
      globalThis.WebSocket = saved;
    }
  });
});
