// The 13 steps of `portcullis scenario` (docs/cli.md) and the takeover story
// (docs/protocol.md §6), as the demo page runs them, against the in-memory fake
// server. The same runs against the real server are in real_server.test.js.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ErrorCode, PortcullisError, jsonEqual, runScenario, runTakeover, shortToken } from "../portcullis.js";
import { startFakePortcullis } from "../testing/fake_portcullis.js";

describe("the scenario against the fake server", () => {
  /** @type {Awaited<ReturnType<typeof startFakePortcullis>>} */
  let fake;
  before(async () => {
    fake = await startFakePortcullis({ kickSaveMs: 1000 });
  });
  after(() => fake.close());

  test("13/13 steps ok, one report per step as it finishes", async () => {
    /** @type {number[]} */
    const seen = [];
    /** @type {string[]} */
    const accounts = [];
    const report = await runScenario(fake.url, {
      onStep: (step) => seen.push(step.number),
      onAccount: (account) => accounts.push(account),
    });
    const failed = report.steps.filter((step) => !step.ok);
    assert.deepEqual(failed, [], "every step passes");
    assert.equal(report.summary, "13/13 steps ok");
    assert.ok(report.ok);
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    assert.equal(accounts.length, 1);
    assert.match(accounts[0], /^sc[0-9A-Za-z]{10}$/);
    assert.equal(report.steps[2].expected, "INVALID_CREDENTIALS");
  });

  test("a server that breaks a rule gets FAIL on that step and a FAILED summary", async () => {
    // Another account's data already there: step 6 expects NO_USERDATA.
    fake.state.accounts.set("brokenacct1", { name: "brokenacct1", password: "portcullis-1" });
    fake.state.userdata.set("brokenacct1", [{ data: {}, version: 1, saved_at: "2024-01-01T00:00:00.000Z" }]);
    const report = await runScenario(fake.url, { account: "brokenacct1" });
    const failed = report.steps.filter((step) => !step.ok).map((step) => step.number);
    assert.deepEqual(failed, [6, 7, 12]);
    assert.equal(report.summary, "10/13 steps ok, 3 FAILED");
    assert.equal(report.steps[5].actual, "a result (no error)");
  });

  test("the takeover: A is kicked, saves by itself, B loads A's save: 7/7 checks ok", async () => {
    /** @type {string[]} */
    const lines = [];
    const report = await runTakeover(fake.url, { onMessage: (side, text) => lines.push(`${side} ${text}`) });
    assert.deepEqual(report.steps.filter((step) => !step.ok), [], lines.join("\n"));
    assert.equal(report.summary, "7/7 checks ok");
    const kicked = lines.findIndex((line) => line.startsWith("A <- kicked"));
    const pending = lines.findIndex((line) => line.startsWith("B <- login_pending"));
    const bLogin = lines.findIndex((line) => line.startsWith("B <- login result"));
    assert.ok(kicked > 0 && pending > 0 && bLogin > kicked && bLogin > pending, lines.join("\n"));
  });

  test("a login that cannot be reached gives a scenario error, not a step list", async () => {
    await assert.rejects(runScenario("ws://127.0.0.1:1/"), (error) => error instanceof PortcullisError && error.kind === "io");
  });
});

test("helpers: jsonEqual ignores member order, shortToken cuts at 8", () => {
  assert.ok(jsonEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }));
  assert.ok(!jsonEqual({ a: 1 }, { a: 1, b: 2 }));
  assert.ok(!jsonEqual([1], { 0: 1 }));
  assert.equal(shortToken("0123456789abcdef"), "01234567…");
  assert.equal(shortToken(null), "-");
  assert.equal(ErrorCode.NO_USERDATA, 1004);
});
