// A small in-memory stand-in for the Portcullis server, speaking docs/protocol.md
// over the test WebSocket server: enough of §2–§6 for the client's tests and
// the scenario (login by password or token, logout, userdata, register, ping,
// disconnect, batches, the duplicate-login kick with its save deadline).
// It is not the server: the real-server tests check the real one.
//
// Test-only methods let a test make the fake misbehave on purpose:
//   test_silent {}                      never answered
//   test_delay {ms, value}              answered {value} after ms
//   test_notify {method, params}        sends that notification, then answers {}
//   test_send_raw {text}                sends text as is (then nothing else)
//   test_send_binary {}                 sends a binary message
//   test_close {code, reason, notify}   sends disconnected {reason: notify} (if given), then a close frame

import { startWsServer } from "./ws_server.js";

/** Error codes of docs/protocol.md §3. */
const E = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  NOT_LOGGED_IN: 1001,
  INVALID_CREDENTIALS: 1002,
  TOKEN_INVALID: 1003,
  NO_USERDATA: 1004,
  ALREADY_LOGGED_IN: 1005,
  SESSION_CLOSING: 1006,
  LOGIN_IN_PROGRESS: 1008,
  ACCOUNT_EXISTS: 1009,
  INVALID_ACCOUNT: 1010,
};

/** @param {unknown} v */
const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Starts the fake on a free loopback port.
 * @param {{kickSaveMs?: number, serveHttp?: (path: string) => {type: string, body: string}|null}} [options]
 * @returns {Promise<{url: string, port: number, state: FakeState, connections: Set<any>, close: () => Promise<void>}>}
 */
export async function startFakePortcullis(options = {}) {
  const kickSaveMs = options.kickSaveMs ?? 5000;
  /** @type {FakeState} */
  const state = {
    accounts: new Map([
      ["netease1", { name: "netease1", password: "123" }],
      ["netease2", { name: "netease2", password: "123" }],
      ["netease3", { name: "netease3", password: "123" }],
    ]),
    userdata: new Map(),
    holders: new Map(),
    waiting: new Set(),
    received: [],
    nextConn: 1,
  };

  const server = await startWsServer((ws) => {
    const conn = new FakeConn(ws, state, kickSaveMs);
    ws.onmessage = (text) => conn.enqueue(text);
    ws.onclose = () => conn.gone();
  }, options);
  return { ...server, state };
}

/**
 * @typedef {object} FakeState
 * @property {Map<string, {name: string, password: string}>} accounts by lowercased name
 * @property {Map<string, {data: unknown, version: number, saved_at: string}[]>} userdata by lowercased name
 * @property {Map<string, FakeConn>} holders the connection holding each account's session
 * @property {Set<string>} waiting accounts with a takeover login waiting
 * @property {string[]} received every text message received, all connections
 * @property {number} nextConn
 */

/** One connection's session state. */
class FakeConn {
  /**
   * @param {import("./ws_server.js").WsConnection} ws
   * @param {FakeState} state
   * @param {number} kickSaveMs
   */
  constructor(ws, state, kickSaveMs) {
    this.ws = ws;
    this.state = state;
    this.kickSaveMs = kickSaveMs;
    this.id = state.nextConn++;
    /** @type {{account: string, token: string}|null} */
    this.session = null;
    /** @type {{reason: string, timer: ReturnType<typeof setTimeout>, done: () => void}|null} */
    this.kick = null;
    /** @type {Promise<void>} Frames are handled one after another (§2 ordering). */
    this.queue = Promise.resolve();
    this.closed = false;
    /** @type {Set<() => void>} Called when the connection is gone. */
    this.onGone = new Set();
  }

  /** @param {string} text */
  enqueue(text) {
    this.state.received.push(text);
    this.queue = this.queue.then(() => this.frame(text)).catch(() => {});
  }

  /** @param {unknown} message */
  send(message) {
    if (!this.closed) this.ws.send(JSON.stringify(message));
  }

  /**
   * Sends `disconnected {reason}`, a close frame 1000 with `reason`, and ends
   * the session (docs/protocol.md §1.1, §5).
   * @param {string} reason
   */
  disconnect(reason) {
    if (this.closed) return;
    this.send({ jsonrpc: "2.0", method: "disconnected", params: { reason } });
    this.ws.close(1000, reason);
    this.gone();
  }

  gone() {
    if (this.closed) return;
    this.closed = true;
    this.endSession();
    if (this.kick) {
      clearTimeout(this.kick.timer);
      this.kick = null;
    }
    for (const callback of this.onGone) callback();
  }

  endSession() {
    if (this.session && this.state.holders.get(this.session.account) === this) {
      this.state.holders.delete(this.session.account);
    }
    this.session = null;
  }

  /** @param {string} text */
  async frame(text) {
    if (this.closed || text.trim() === "") return;
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      this.send({ jsonrpc: "2.0", id: null, error: { code: E.PARSE, message: "parse error" } });
      return;
    }
    if (Array.isArray(message)) {
      if (message.length === 0) {
        this.send({ jsonrpc: "2.0", id: null, error: { code: E.INVALID_REQUEST, message: "invalid request" } });
        return;
      }
      const replies = [];
      for (const member of message) {
        const reply = await this.request(member);
        if (reply) replies.push(reply);
        if (this.closed) break;
      }
      if (replies.length) this.ws.send(JSON.stringify(replies));
      return;
    }
    const reply = await this.request(message);
    if (reply) this.send(reply);
  }

  /**
   * Handles one request object; returns its response, or `null` for a notification.
   * @param {any} message
   */
  async request(message) {
    if (!isObject(message) || message.jsonrpc !== "2.0" || typeof message.method !== "string") {
      return { jsonrpc: "2.0", id: null, error: { code: E.INVALID_REQUEST, message: "invalid request" } };
    }
    const hasId = Object.hasOwn(message, "id");
    const id = hasId ? message.id : null;
    const params = message.params ?? {};
    /** @type {{result?: unknown, error?: {code: number, message: string, data?: unknown}, after?: () => void, silent?: boolean}} */
    let outcome;
    try {
      outcome = await this.method(message.method, params);
    } catch (error) {
      outcome = { error: { code: -32603, message: String(error) } };
    }
    if (!hasId || outcome.silent) {
      outcome.after?.();
      return null;
    }
    const reply = outcome.error ? { jsonrpc: "2.0", id, error: outcome.error } : { jsonrpc: "2.0", id, result: outcome.result };
    if (outcome.after) {
      // Answer first, then do what follows (disconnect, end of a kick).
      this.send(reply);
      outcome.after();
      return null;
    }
    return reply;
  }

  /**
   * The auth rule of docs/protocol.md §4; an error outcome, or `null` when it passes.
   * @param {any} params
   */
  auth(params) {
    if (!this.session) return { error: { code: E.NOT_LOGGED_IN, message: "not logged in" } };
    if (typeof params.token !== "string") {
      return { error: { code: E.INVALID_PARAMS, message: "invalid params", data: { field: "token" } } };
    }
    if (params.token !== this.session.token) return { error: { code: E.TOKEN_INVALID, message: "token invalid" } };
    return null;
  }

  /**
   * @param {string} method
   * @param {any} params
   * @returns {Promise<any>}
   */
  async method(method, params) {
    if (this.kick && !["userdata_save", "logout", "ping", "disconnect"].includes(method) && !method.startsWith("test_")) {
      const known = ["login", "register", "userdata_load", "change_password"].includes(method);
      return known
        ? { error: { code: E.SESSION_CLOSING, message: "session is closing" } }
        : { error: { code: E.METHOD_NOT_FOUND, message: "method not found" } };
    }
    switch (method) {
      case "ping":
        return { result: { server_time_ms: Date.now() } };
      case "disconnect":
        return { result: {}, after: () => this.disconnect("client_request") };
      case "register": {
        if (typeof params.account !== "string") return invalidParams("account");
        if (typeof params.password !== "string") return invalidParams("password");
        if (this.session) return { error: { code: E.ALREADY_LOGGED_IN, message: "already logged in" } };
        const length = [...params.password].length;
        if (!/^[0-9A-Za-z]{6,16}$/.test(params.account) || length < 6 || length > 64) {
          return { error: { code: E.INVALID_ACCOUNT, message: "invalid account name or password" } };
        }
        const key = params.account.toLowerCase();
        if (this.state.accounts.has(key)) return { error: { code: E.ACCOUNT_EXISTS, message: "account exists" } };
        this.state.accounts.set(key, { name: params.account, password: params.password });
        return { result: { account: params.account } };
      }
      case "login":
        return this.login(params);
      case "logout": {
        const refused = this.auth(params);
        if (refused) return refused;
        const kick = this.kick;
        this.endSession();
        return { result: {}, after: kick ? () => kick.done() : undefined };
      }
      case "userdata_save": {
        const refused = this.auth(params);
        if (refused) return refused;
        if (!isObject(params.data)) return invalidParams("data");
        const key = /** @type {{account: string}} */ (this.session).account;
        const history = this.state.userdata.get(key) ?? [];
        const save = { data: params.data, version: history.length + 1, saved_at: new Date().toISOString() };
        history.push(save);
        this.state.userdata.set(key, history);
        const kick = this.kick;
        return { result: { version: save.version, saved_at: save.saved_at }, after: kick ? () => kick.done() : undefined };
      }
      case "userdata_load": {
        const refused = this.auth(params);
        if (refused) return refused;
        const history = this.state.userdata.get(/** @type {{account: string}} */ (this.session).account) ?? [];
        const newest = history.at(-1);
        if (!newest) return { error: { code: E.NO_USERDATA, message: "no user data saved yet" } };
        return { result: { data: newest.data, version: newest.version, saved_at: newest.saved_at } };
      }
      case "test_silent":
        return { silent: true };
      case "test_delay":
        await new Promise((resolve) => setTimeout(resolve, params.ms));
        return { result: { value: params.value } };
      case "test_notify":
        this.send({ jsonrpc: "2.0", method: params.method, params: params.params });
        return { result: {} };
      case "test_send_raw":
        if (!this.closed) this.ws.send(params.text);
        return { silent: true };
      case "test_send_binary":
        this.ws.sendBinary(Buffer.from([1, 2, 3]));
        return { silent: true };
      case "test_close":
        if (params.notify) this.send({ jsonrpc: "2.0", method: "disconnected", params: { reason: params.notify } });
        this.ws.close(params.code ?? 1000, params.reason ?? "");
        this.gone();
        return { silent: true };
      default:
        return { error: { code: E.METHOD_NOT_FOUND, message: "method not found" } };
    }
  }

  /** @param {any} params */
  async login(params) {
    if (typeof params.token === "string") {
      if (this.session && this.session.token === params.token) return { result: { ...this.session, account: this.accountName() } };
      return { error: { code: E.TOKEN_INVALID, message: "token invalid" } };
    }
    if (typeof params.account !== "string") return invalidParams("account");
    if (typeof params.password !== "string") return invalidParams("password");
    const key = params.account.toLowerCase();
    if (this.session && this.session.account !== key) {
      return { error: { code: E.ALREADY_LOGGED_IN, message: "already logged in as another account" } };
    }
    const account = this.state.accounts.get(key);
    if (!account || account.password !== params.password) {
      return { error: { code: E.INVALID_CREDENTIALS, message: "invalid account or password" } };
    }
    if (this.session) return { result: { account: account.name, token: this.session.token } };
    if (this.state.waiting.has(key)) return { error: { code: E.LOGIN_IN_PROGRESS, message: "login already in progress" } };
    const holder = this.state.holders.get(key);
    if (holder && holder !== this) {
      this.state.waiting.add(key);
      this.send({ jsonrpc: "2.0", method: "login_pending", params: { reason: "replacing_session" } });
      await holder.kickFor("duplicate_login");
      this.state.waiting.delete(key);
      if (this.closed) return { silent: true };
    }
    const token = randomToken();
    this.session = { account: key, token };
    this.state.holders.set(key, this);
    return { result: { account: account.name, token } };
  }

  accountName() {
    return this.session ? (this.state.accounts.get(this.session.account)?.name ?? this.session.account) : null;
  }

  /**
   * Kicks this session (docs/protocol.md §6): `kicked`, then waits for a save, a
   * logout, the deadline or the close, then `disconnected` and close.
   * @param {string} reason
   * @returns {Promise<void>} resolves once this connection is gone
   */
  kickFor(reason) {
    return new Promise((resolve) => {
      if (this.closed) {
        resolve();
        return;
      }
      this.onGone.add(() => resolve());
      const done = () => this.disconnect(reason);
      this.kick = { reason, timer: setTimeout(done, this.kickSaveMs), done };
      this.send({ jsonrpc: "2.0", method: "kicked", params: { reason, save_deadline_ms: this.kickSaveMs } });
    });
  }
}

/** @param {string} field */
function invalidParams(field) {
  return { error: { code: E.INVALID_PARAMS, message: "invalid params", data: { field } } };
}

/** A fresh token: 64 lowercase hex characters. */
function randomToken() {
  const bytes = new Uint8Array(32);
  globalThis.crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
