// The demo page (index.html): its script runs in Node on a tiny stand-in for
// the DOM, served-from the fake server (location = the fake's http URL with
// ?run=scenario,takeover), and must end with the exact texts `13/13 steps ok`
// and `7/7 checks ok`. Also: every element the script uses exists, and what it
// imports is what portcullis.js exports. The same page in a real browser
// (headless Chromium) is tests/e2e_browser.rs at the repository root.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

import * as portcullis from "../portcullis.js";
import { startFakePortcullis } from "../testing/fake_portcullis.js";

const html = readFileSync(new URL("../index.html", import.meta.url), "utf8");
const moduleUrl = new URL("../portcullis.js", import.meta.url);
const script = /<script type="module">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? "";

test("the page's script imports only what portcullis.js exports", () => {
  const imports = /import\s*\{([^}]*)\}\s*from\s*"\.\/portcullis\.js"/.exec(script);
  assert.ok(imports, "the page imports ./portcullis.js");
  for (const name of imports[1].split(",").map((n) => n.trim()).filter(Boolean)) {
    assert.ok(name in portcullis, `portcullis.js exports ${name}`);
  }
});

test("every element id the script uses is in the page", () => {
  const ids = new Set([...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]));
  const used = [...script.matchAll(/\$\("([^"]+)"\)/g)].map((m) => m[1]);
  assert.ok(used.length > 10);
  for (const id of used) assert.ok(ids.has(id), `#${id} exists`);
});

test("the page logs in to a demo account by default", () => {
  assert.match(html, /id="account" value="netease1"/);
  assert.match(html, /id="password" value="123"/);
});

/** A stand-in for a DOM element: what the page's script touches. */
class FakeElement {
  /** @param {string} tag */
  constructor(tag) {
    this.tag = tag;
    this.textContent = "";
    this.value = "";
    this.hidden = false;
    this.disabled = false;
    this.className = "";
    this.scrollTop = 0;
    this.scrollHeight = 0;
    /** @type {Record<string, string>} */
    this.dataset = {};
    /** @type {FakeElement[]} */
    this.children = [];
    /** @type {(() => unknown)|null} */
    this.onclick = null;
    /** @type {FakeElement|null} */
    this.tbody = null;
  }
  /** @param {FakeElement[]} nodes */
  append(...nodes) {
    this.children.push(...nodes);
  }
  /** @param {string} selector */
  querySelector(selector) {
    assert.equal(selector, "tbody");
    this.tbody ??= new FakeElement("tbody");
    return this.tbody;
  }
}

test("run at load with ?run=scenario,takeover, the page shows 13/13 steps ok and 7/7 checks ok", async () => {
  const fake = await startFakePortcullis({ kickSaveMs: 1000 });
  const dir = mkdtempSync(join(tmpdir(), "portcullis-page-"));
  /** @type {Map<string, FakeElement>} */
  const elements = new Map();
  for (const [, tag, id] of html.matchAll(/<(\w+)[^>]*\sid="([^"]+)"/g)) {
    const element = new FakeElement(tag);
    const value = new RegExp(`id="${id}" value="([^"]*)"`).exec(html);
    if (value) element.value = value[1];
    if (tag === "textarea") element.value = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html)?.[1] ?? "";
    elements.set(id, element);
  }
  const body = new FakeElement("body");
  const saved = { document: globalThis.document, location: globalThis.location };
  Object.assign(globalThis, {
    document: {
      body,
      getElementById: (/** @type {string} */ id) => elements.get(id) ?? null,
      createElement: (/** @type {string} */ tag) => new FakeElement(tag),
    },
    location: new URL(`${fake.url.replace(/^ws/, "http")}?run=scenario,takeover`),
  });
  try {
    const file = join(dir, "page.mjs");
    writeFileSync(file, script.replace('"./portcullis.js"', JSON.stringify(moduleUrl.href)));
    await import(pathToFileURL(file).href);
    assert.equal(elements.get("server-url")?.textContent, fake.url);
    const deadline = Date.now() + 30_000;
    while (body.dataset.takeover !== "done" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const steps = elements.get("scenario-table")?.tbody?.children ?? [];
    assert.equal(steps.length, 13, "one line per step");
    assert.ok(steps.every((tr) => tr.className === "ok"));
    assert.equal(elements.get("scenario-summary")?.textContent, "13/13 steps ok");
    assert.equal(elements.get("scenario-summary")?.hidden, false);
    assert.equal(elements.get("takeover-summary")?.textContent, "7/7 checks ok");
    assert.ok((elements.get("log-a")?.children.length ?? 0) > 3, "A's messages are shown");
    assert.ok((elements.get("log-b")?.children.length ?? 0) > 2, "B's messages are shown");
  } finally {
    Object.assign(globalThis, saved);
    rmSync(dir, { recursive: true, force: true });
    await fake.close();
  }
});
