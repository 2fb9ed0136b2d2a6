// The client against the real `portcullis serve` (docs/protocol.md §1.1): the
// 13 steps, the takeover and the demo accounts on the server's WebSocket
// listener; the close frame and the two files served on the WebSocket port.
//
// A binary without a WebSocket listener yet: the session tests run through a
// WebSocket-to-TCP bridge served by the test (../testing/real_server.js), so
// they still meet the real server's rules, and the listener's own tests are
// skipped with the reason.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, describe, test } from "node:test";

import { Client, ErrorCode, runScenario, runTakeover } from "../portcullis.js";
import { startBridgedServer, startRealServer } from "../testing/real_server.js";

const ARGS = ["--kick-save-timeout", "3s"];
const native = await startRealServer(ARGS);
const noWs = "skip" in native ? native.skip : null;
const sessions = noWs === null ? native : await startBridgedServer(ARGS);
const how = noWs === null ? "over its WebSocket listener" : "through a WebSocket-to-TCP bridge (no WebSocket listener yet)";

describe(`the real server's sessions, ${how}`, { skip: "skip" in sessions ? sessions.skip : false }, () => {
  const real = /** @type {import("../testing/real_server.js").RealServer} */ (sessions);
  // The listener's suite below stops the native server when it is the same one.
  after(() => (sessions === native ? undefined : real.stop()));

  test("the 13 steps of portcullis scenario: 13/13 steps ok", async () => {
    const report = await runScenario(real.url);
    assert.deepEqual(report.steps.filter((step) => !step.ok), []);
    assert.equal(report.summary, "13/13 steps ok");
  });

  test("the takeover: 7/7 checks ok", async () => {
    /** @type {string[]} */
    const lines = [];
    const report = await runTakeover(real.url, { onMessage: (side, text) => lines.push(`${side} ${text}`) });
    assert.deepEqual(report.steps.filter((step) => !step.ok), [], lines.join("\n"));
    assert.equal(report.summary, "7/7 checks ok");
  });

  test("a demo account logs in, saves, loads and logs out; the connection stays open", async () => {
    const client = await Client.connect(real.url);
    try {
      await assert.rejects(client.login("netease1", "wrong-password"), (e) => e.code === ErrorCode.INVALID_CREDENTIALS);
      const login = await client.login("netease1", "123");
      assert.equal(login.account, "netease1");
      const save = await client.userdataSave({ gold: 5, name: "wydx" });
      const load = await client.userdataLoad();
      assert.deepEqual(load, { data: { gold: 5, name: "wydx" }, version: save.version, saved_at: save.saved_at });
      const outcomes = await client.batch([{ method: "ping" }, { method: "no_such_method" }]);
      assert.ok(outcomes[0].ok);
      assert.ok(!outcomes[1].ok && outcomes[1].error.code === ErrorCode.METHOD_NOT_FOUND);
      await client.logout();
      assert.equal(client.token, null);
      await client.ping();
    } finally {
      client.close();
    }
  });

  test("disconnect: the server's reason is client_request", async () => {
    const client = await Client.connect(real.url);
    assert.equal(await client.disconnect(), "client_request");
    assert.equal((await client.closed).reason, "client_request");
  });
});

describe("the real server's WebSocket listener", { skip: noWs ?? false }, () => {
  const real = /** @type {import("../testing/real_server.js").RealServer} */ (native);
  after(() => ("stop" in real ? real.stop() : undefined));

  test("after disconnected, a close frame 1000 with the reason text", async () => {
    const client = await Client.connect(real.url);
    await client.disconnect();
    const info = await client.closed;
    assert.equal(info.code, 1000);
    assert.equal(info.wsReason, "client_request");
  });

  test("the WebSocket port serves the demo page and this very client; other paths are 404", async () => {
    const http = real.url.replace(/^ws/, "http");
    const page = await fetch(http);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    assert.equal(await page.text(), readFileSync(new URL("../index.html", import.meta.url), "utf8"));
    const module = await fetch(new URL("portcullis.js", http));
    assert.equal(module.status, 200);
    assert.match(module.headers.get("content-type") ?? "", /^text\/javascript/);
    assert.equal(await module.text(), readFileSync(new URL("../portcullis.js", import.meta.url), "utf8"));
    const missing = await fetch(new URL("no-such-page", http));
    assert.equal(missing.status, 404);
  });
});
