// portcullis.js: the JavaScript client of Portcullis (docs/protocol.md, WebSocket
// transport §1.1). An ES module with no dependencies and no build step; it runs
// in browsers and in Node >= 22 (Node 20 needs `--experimental-websocket`).
//
//   application ──client.login/ping/call──> request, id 1, 2, 3, ...  ──> one text message each
//        ▲                                                                     │
//        │ results matched by id (any order, §2)          WebSocket <──────────┘
//        ├──────────── onmessage <──── server
//        └── client.on(...) <── notifications (kicked, disconnected, ...),
//                               outcome of the automatic save on `kicked`
//
// The client follows docs/protocol.md §7, like the reference client in clients/rust:
// - it never reconnects by itself;
// - when a request gets no response within `rpcTimeoutMs` (default 10 s), it
//   closes the connection and every pending call fails with kind "timeout";
// - on `kicked` it at once sends `userdata_save` with the data given to
//   setSaveData (or returned by setSaveProvider's callback);
// - it keeps its token only while the connection lives; `login` uses the held
//   token first and falls back to the password when the token is refused.
//
// The end of the file holds the 13-step check of `portcullis scenario`
// (docs/cli.md) and the takeover story of §6, which the demo page runs.

/** The default RPC timeout in milliseconds (docs/protocol.md §7). */
export const DEFAULT_RPC_TIMEOUT_MS = 10_000;
/** The default time `Client.connect` may take to open the WebSocket, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * The error codes of docs/protocol.md §3, by name. Clients branch on `code` only.
 * @type {Readonly<Record<string, number>>}
 */
export const ErrorCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  NOT_LOGGED_IN: 1001,
  INVALID_CREDENTIALS: 1002,
  TOKEN_INVALID: 1003,
  NO_USERDATA: 1004,
  ALREADY_LOGGED_IN: 1005,
  SESSION_CLOSING: 1006,
  RATE_LIMITED: 1007,
  LOGIN_IN_PROGRESS: 1008,
  ACCOUNT_EXISTS: 1009,
  INVALID_ACCOUNT: 1010,
  SERVER_BUSY: 1011,
  SERVICE_UNAVAILABLE: 1012,
});

/**
 * The name of an error code of docs/protocol.md §3 (`1001` → `"NOT_LOGGED_IN"`),
 * or `"error <code>"` for a code §3 does not list.
 * @param {number} code
 * @returns {string}
 */
export function errorName(code) {
  for (const [name, value] of Object.entries(ErrorCode)) {
    if (value === code) return name;
  }
  return `error ${code}`;
}

/**
 * Why a call failed. `kind` says how:
 * - `"rpc"`: the server answered with a JSON-RPC error object (docs/protocol.md §2–§3);
 *   `code`, `message` and `data` are the server's;
 * - `"timeout"`: no response within the RPC timeout (§7); the client closed the connection;
 * - `"closed"`: the connection is closed; `reason` is the `reason` of the server's
 *   `disconnected` notification (§5) when one came, else `null`;
 * - `"protocol"`: the server sent something that is not JSON-RPC 2.0;
 * - `"io"`: the WebSocket failed (could not connect, or an error event).
 */
export class PortcullisError extends Error {
  /**
   * @param {"rpc"|"timeout"|"closed"|"protocol"|"io"} kind
   * @param {string} message
   * @param {{code?: number|null, data?: unknown, reason?: string|null}} [extra]
   */
  constructor(kind, message, extra = {}) {
    super(message);
    this.name = "PortcullisError";
    /** @type {"rpc"|"timeout"|"closed"|"protocol"|"io"} How the call failed. */
    this.kind = kind;
    /** @type {number|null} The server's error code (kind "rpc"), else `null`. */
    this.code = extra.code ?? null;
    /** @type {unknown} The server's `data` member (kind "rpc"), e.g. `{field: "token"}` for -32602. */
    this.data = extra.data;
    /** @type {string|null} The server's close reason (kind "closed"), e.g. `"duplicate_login"`. */
    this.reason = extra.reason ?? null;
  }

  /** The name of `code` (`"NOT_LOGGED_IN"`), or `kind` when this is not a server error. */
  get codeName() {
    return this.code === null ? this.kind : errorName(this.code);
  }
}

/**
 * The WebSocket constructor to use: `options.WebSocket`, else the global one.
 * @param {{WebSocket?: any}} options
 * @returns {any}
 */
function webSocketClass(options) {
  const ctor = options.WebSocket ?? globalThis.WebSocket;
  if (typeof ctor !== "function") {
    throw new PortcullisError(
      "io",
      "no WebSocket here: use a browser or Node >= 22 (Node 20: run with --experimental-websocket), or pass options.WebSocket",
    );
  }
  return ctor;
}

/** WebSocket readyState OPEN. */
const OPEN = 1;

/**
 * A connection to a Portcullis server over WebSocket (docs/protocol.md §1.1), with a
 * method for every call of §4. Create it with `Client.connect(url)`.
 *
 * Several calls may be in flight at once; responses are matched by `id`. The
 * connection closes when the server closes it, on an RPC timeout, on `close()`,
 * or when the server sends something that is not JSON-RPC. Every call fails
 * with kind `"closed"` once it is closed. It never reconnects.
 *
 * Events (`client.on(type, listener)`), in arrival order:
 * - `"notification"` `{method, params}`: every server notification (§5), the three
 *   below included, and those of services and operators;
 * - `"login_pending"`, `"kicked"`, `"disconnected"`: their `params` (§5). A `kicked`
 *   is reported after the automatic save it triggers is sent;
 * - `"kicksave"` `{ok: true, result}` or `{ok: false, error}`: the outcome of the
 *   automatic save sent on `kicked` (only when one was sent);
 * - `"unmatched"`: a response whose `id` is `null` or matches no call, whole;
 * - `"close"` `{cause, reason, code, wsReason}`: once, when the connection closed.
 */
export class Client {
  /**
   * Opens a WebSocket to `url` (`ws://HOST:PORT/` or `wss://HOST:PORT/`) and
   * resolves once it is open.
   * @param {string} url
   * @param {ClientOptions} [options]
   * @returns {Promise<Client>}
   * @throws {PortcullisError} kind `"io"` when the connection cannot be opened,
   *   `"timeout"` after `connectTimeoutMs`.
   */
  static connect(url, options = {}) {
    /** @type {any} */
    let WebSocketCtor;
    try {
      WebSocketCtor = webSocketClass(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      /** @type {any} */
      let ws;
      try {
        ws = new WebSocketCtor(url);
      } catch (error) {
        reject(new PortcullisError("io", `cannot open ${url}: ${describe(error)}`));
        return;
      }
      const client = new Client(ws, options);
      const timer = setTimeout(() => {
        client.#onOpen = null;
        client.#finish("timeout", null);
        reject(new PortcullisError("timeout", `cannot open ${url} within ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);
      client.#onOpen = (/** @type {PortcullisError|null} */ error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(client);
      };
    });
  }

  /** @type {any} The WebSocket. */
  #ws;
  /** @type {number} The RPC timeout in ms. */
  #rpcTimeoutMs;
  /** @type {((direction: "send"|"receive", text: string) => void)|null} Sees every message. */
  #trace;
  /** @type {number} The id of the next request: 1, 2, 3, ... */
  #nextId = 1;
  /** @type {Map<number, Pending>} Requests sent and not yet answered, by id. */
  #pending = new Map();
  /** @type {{account: string, token: string}|null} The live token and its account. */
  #session = null;
  /** @type {{kind: "none"}|{kind: "data", data: unknown}|{kind: "provider", provider: () => unknown}} */
  #save = { kind: "none" };
  /** @type {Map<string, Set<(detail: any) => void>>} Listeners by event type. */
  #listeners = new Map();
  /** @type {string|null} The `reason` of the server's `disconnected`. */
  #disconnectReason = null;
  /** @type {CloseInfo|null} Why the connection closed; `null` while open. */
  #closed = null;
  /** @type {((error: PortcullisError|null) => void)|null} Settles `connect` once. */
  #onOpen = null;
  /** @type {Promise<CloseInfo>} Resolves once closed. */
  #closedPromise;
  /** @type {(info: CloseInfo) => void} */
  #resolveClosed = () => {};

  /**
   * Use `Client.connect`; this wraps a WebSocket that is connecting or open.
   * @param {any} ws
   * @param {ClientOptions} options
   */
  constructor(ws, options = {}) {
    this.#ws = ws;
    this.#rpcTimeoutMs = options.rpcTimeoutMs ?? DEFAULT_RPC_TIMEOUT_MS;
    this.#trace = options.trace ?? null;
    this.#closedPromise = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    ws.onopen = () => {
      const onOpen = this.#onOpen;
      this.#onOpen = null;
      onOpen?.(null);
    };
    ws.onmessage = (/** @type {{data: unknown}} */ event) => this.#onMessage(event.data);
    ws.onerror = () => {
      if (this.#onOpen) {
        // The close event follows; report the failed connect now.
        const onOpen = this.#onOpen;
        this.#onOpen = null;
        onOpen(new PortcullisError("io", `cannot connect to ${ws.url}`));
      }
    };
    ws.onclose = (/** @type {{code: number, reason: string}} */ event) => {
      if (this.#onOpen) {
        const onOpen = this.#onOpen;
        this.#onOpen = null;
        onOpen(new PortcullisError("io", `cannot connect to ${ws.url} (close ${event.code})`));
      }
      this.#finish("eof", null, event.code, event.reason);
    };
  }

  // ---------------------------------------------------------------------
  // Events.
  // ---------------------------------------------------------------------

  /**
   * Adds `listener` for events of `type` (see the class doc) and returns a
   * function that removes it. A listener that throws does not stop the others
   * nor the client: its error goes to `reportError` (browsers) or `console.error`.
   * @param {string} type
   * @param {(detail: any) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    let set = this.#listeners.get(type);
    if (!set) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener);
    return () => this.off(type, listener);
  }

  /**
   * Removes `listener` from events of `type`.
   * @param {string} type
   * @param {(detail: any) => void} listener
   */
  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  /**
   * Resolves with the detail of the next event of `type`; rejects with a
   * `"timeout"` error after `timeoutMs` when given, and with a `"closed"` error
   * when the connection closes first (unless `type` is `"close"`).
   * @param {string} type
   * @param {number} [timeoutMs]
   * @returns {Promise<any>}
   */
  next(type, timeoutMs) {
    return new Promise((resolve, reject) => {
      /** @type {ReturnType<typeof setTimeout>|undefined} */
      let timer;
      const done = () => {
        offType();
        offClose();
        if (timer !== undefined) clearTimeout(timer);
      };
      const offType = this.on(type, (detail) => {
        done();
        resolve(detail);
      });
      const offClose =
        type === "close"
          ? () => {}
          : this.on("close", () => {
              done();
              reject(this.#closedError());
            });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          done();
          reject(new PortcullisError("timeout", `no ${type} event within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      if (type !== "close" && this.#closed) {
        done();
        reject(this.#closedError());
      } else if (type === "close" && this.#closed) {
        done();
        resolve(this.#closed);
      }
    });
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  #emit(type, detail) {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(detail);
      } catch (error) {
        // Application code: report it without breaking the client or the process.
        if (typeof globalThis.reportError === "function") globalThis.reportError(error);
        else console.error("portcullis: an event listener threw:", error);
      }
    }
  }

  // ---------------------------------------------------------------------
  // State.
  // ---------------------------------------------------------------------

  /**
   * The token this client holds: set by a successful login, dropped by a
   * successful `logout`, by a `TOKEN_INVALID` refusal in `login`, and when the
   * connection closes (docs/protocol.md §7). `null` when none.
   * @returns {string|null}
   */
  get token() {
    return this.#session?.token ?? null;
  }

  /**
   * The account of the held token, as the server spelled it; `null` when none.
   * @returns {string|null}
   */
  get account() {
    return this.#session?.account ?? null;
  }

  /**
   * Whether the connection is closed (or closing): calls now fail with kind `"closed"`.
   * @returns {boolean}
   */
  get isClosed() {
    return this.#closed !== null;
  }

  /**
   * Resolves once the connection is closed, with why.
   * @returns {Promise<CloseInfo>}
   */
  get closed() {
    return this.#closedPromise;
  }

  /**
   * The `reason` of the server's `disconnected` notification (docs/protocol.md §5),
   * once one has arrived, e.g. `"server_full"`; else `null`.
   * @returns {string|null}
   */
  get disconnectReason() {
    return this.#disconnectReason;
  }

  /** The RPC timeout in milliseconds (docs/protocol.md §7). */
  get rpcTimeoutMs() {
    return this.#rpcTimeoutMs;
  }

  /**
   * Sets the data the client saves by itself when `kicked` (docs/protocol.md §6–§7),
   * replacing any earlier data or provider. Should be a JSON object.
   * @param {unknown} data
   */
  setSaveData(data) {
    this.#save = { kind: "data", data };
  }

  /**
   * Sets a callback that gives the data to save when `kicked`, called at the
   * moment of the kick. Replaces any earlier data or provider.
   * @param {() => unknown} provider
   */
  setSaveProvider(provider) {
    this.#save = { kind: "provider", provider };
  }

  /** Forgets the save data or provider: a kick then sends no save. */
  clearSaveData() {
    this.#save = { kind: "none" };
  }

  // ---------------------------------------------------------------------
  // Raw calls.
  // ---------------------------------------------------------------------

  /**
   * Sends a request `{"jsonrpc":"2.0","id":N,"method":method,"params":params}`
   * and resolves with its `result` (docs/protocol.md §2). `params` is sent as given
   * and no token is added.
   * @param {string} method
   * @param {unknown} [params]
   * @returns {Promise<any>}
   * @throws {PortcullisError} kind `"rpc"` with the server's error, `"timeout"`,
   *   `"closed"`, `"protocol"`.
   */
  call(method, params = {}) {
    return new Promise((resolve, reject) => {
      const id = this.#register({ resolve, reject });
      if (id === null) return;
      this.#sendText(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  /**
   * Sends a notification `{"jsonrpc":"2.0","method":method,"params":params}`
   * (no `id`: the server never answers it, docs/protocol.md §2).
   * @param {string} method
   * @param {unknown} [params]
   * @throws {PortcullisError} kind `"closed"` when the connection is closed.
   */
  notify(method, params = {}) {
    this.#throwIfClosed();
    this.#sendText(JSON.stringify({ jsonrpc: "2.0", method, params }));
  }

  /**
   * Sends several requests as one batch frame (docs/protocol.md §2, "batch") and
   * resolves, once every request is answered, with one outcome per entry in
   * order: `{ok: true, result}`, `{ok: false, error}`, or `{ok: true, result:
   * undefined}` for a notification entry (`notify: true`, never answered). An
   * empty list resolves with `[]` without sending anything.
   * @param {BatchEntry[]} entries
   * @returns {Promise<BatchOutcome[]>}
   * @throws {PortcullisError} kind `"closed"` when the connection is closed.
   */
  batch(entries) {
    if (entries.length === 0) return Promise.resolve([]);
    this.#throwIfClosed();
    /** @type {Promise<BatchOutcome>[]} */
    const outcomes = [];
    /** @type {object[]} */
    const members = [];
    for (const entry of entries) {
      const params = entry.params ?? {};
      if (entry.notify) {
        members.push({ jsonrpc: "2.0", method: entry.method, params });
        outcomes.push(Promise.resolve({ ok: true, result: undefined }));
        continue;
      }
      /** @type {Promise<any>} */
      const outcome = new Promise((resolve, reject) => {
        const id = this.#register({ resolve, reject });
        if (id !== null) members.push({ jsonrpc: "2.0", id, method: entry.method, params });
      });
      outcomes.push(
        outcome.then(
          (result) => ({ ok: true, result }),
          (error) => ({ ok: false, error }),
        ),
      );
    }
    this.#sendText(JSON.stringify(members));
    return Promise.all(outcomes);
  }

  /**
   * Sends `text` as one text message, as is (for tests of malformed input,
   * docs/protocol.md §1). The answer, if any, arrives as an `"unmatched"` event
   * unless its `id` is one of this client's pending calls.
   * @param {string} text
   * @throws {PortcullisError} kind `"closed"` when the connection is closed.
   */
  sendRaw(text) {
    this.#throwIfClosed();
    this.#sendText(text);
  }

  /**
   * Closes the connection from the client side (WebSocket close 1000), without
   * telling the server first. Pending calls fail with kind `"closed"`. Does
   * nothing when already closed.
   */
  close() {
    this.#finish("local", null);
  }

  // ---------------------------------------------------------------------
  // The methods of docs/protocol.md §4.
  // ---------------------------------------------------------------------

  /**
   * Logs in the §7 way: with the held token when this client holds one issued
   * for `account` (compared case-insensitively), and with `account` and
   * `password` otherwise or when the server refuses the token with
   * `TOKEN_INVALID` (the refused token is then dropped). Holds the returned token.
   * @param {string} account
   * @param {string} password
   * @returns {Promise<LoginResult>}
   * @throws {PortcullisError} the password login's errors (`INVALID_CREDENTIALS`,
   *   `ALREADY_LOGGED_IN`, `RATE_LIMITED`, `LOGIN_IN_PROGRESS`, ...); a token
   *   login error other than `TOKEN_INVALID` as is.
   */
  async login(account, password) {
    const session = this.#session;
    if (session && session.account.toLowerCase() === account.toLowerCase()) {
      try {
        return await this.loginWithToken(session.token);
      } catch (error) {
        if (!(error instanceof PortcullisError) || error.code !== ErrorCode.TOKEN_INVALID) throw error;
        this.#forgetToken(session.token);
      }
    }
    return this.loginWithPassword(account, password);
  }

  /**
   * Sends `login {"account":account,"password":password}` and holds the returned token.
   * @param {string} account
   * @param {string} password
   * @returns {Promise<LoginResult>}
   * @throws {PortcullisError} e.g. `INVALID_CREDENTIALS` (1002), `ALREADY_LOGGED_IN` (1005).
   */
  loginWithPassword(account, password) {
    return this.#loginCall({ account, password });
  }

  /**
   * Sends `login {"token":token}` with any token (a test may pass a dead one on
   * purpose) and holds the returned token.
   * @param {string} token
   * @returns {Promise<LoginResult>}
   * @throws {PortcullisError} `TOKEN_INVALID` (1003) when `token` is not this
   *   connection's live token.
   */
  loginWithToken(token) {
    return this.#loginCall({ token });
  }

  /**
   * @param {object} params
   * @returns {Promise<LoginResult>}
   */
  async #loginCall(params) {
    const result = await this.call("login", params);
    if (!isObject(result) || typeof result.account !== "string" || typeof result.token !== "string") {
      throw new PortcullisError("protocol", `bad login result: ${JSON.stringify(result)}`);
    }
    if (!this.#closed) this.#session = { account: result.account, token: result.token };
    return { account: result.account, token: result.token };
  }

  /**
   * Sends `logout {"token":T}` with the held token (no `token` member when none
   * is held) and drops the token once the server answers `{}` (§4, §6). The
   * connection stays open.
   * @returns {Promise<void>}
   * @throws {PortcullisError} `NOT_LOGGED_IN` (1001), `TOKEN_INVALID` (1003).
   */
  async logout() {
    const token = this.token;
    await this.call("logout", this.#authParams({}));
    if (token !== null) this.#forgetToken(token);
  }

  /**
   * Sends `userdata_save {"token":T,"data":data}` with the held token. `data`
   * should be a JSON object of at most `max_userdata_bytes` (default 65,536)
   * compact bytes; it is sent as given.
   * @param {unknown} data
   * @returns {Promise<SaveResult>} `{version, saved_at}`
   * @throws {PortcullisError} `NOT_LOGGED_IN`, `TOKEN_INVALID`, `INVALID_PARAMS` (-32602).
   */
  async userdataSave(data) {
    return saveResult(await this.call("userdata_save", this.#authParams({ data })));
  }

  /**
   * Sends `userdata_load {"token":T}` and resolves with the newest saved version.
   * Numbers beyond what a JavaScript number holds exactly (above 2^53, `1e400`)
   * lose precision here, though the server keeps them exactly (§4).
   * @returns {Promise<LoadResult>} `{data, version, saved_at}`
   * @throws {PortcullisError} `NOT_LOGGED_IN`, `TOKEN_INVALID`, `NO_USERDATA` (1004).
   */
  async userdataLoad() {
    const result = await this.call("userdata_load", this.#authParams({}));
    const save = saveResult(result);
    if (!isObject(result.data)) throw new PortcullisError("protocol", `bad userdata_load result: ${JSON.stringify(result)}`);
    return { data: result.data, version: save.version, saved_at: save.saved_at };
  }

  /**
   * Sends `register {"account":account,"password":password}` and resolves with
   * the registered account name. Does not log in.
   * @param {string} account
   * @param {string} password
   * @returns {Promise<string>}
   * @throws {PortcullisError} `ALREADY_LOGGED_IN`, `INVALID_ACCOUNT` (1010), `ACCOUNT_EXISTS` (1009).
   */
  async register(account, password) {
    const result = await this.call("register", { account, password });
    if (!isObject(result) || typeof result.account !== "string") {
      throw new PortcullisError("protocol", `bad register result: ${JSON.stringify(result)}`);
    }
    return result.account;
  }

  /**
   * Sends `change_password {"token":T,"old_password":old,"new_password":new}`.
   * The session and token stay.
   * @param {string} oldPassword
   * @param {string} newPassword
   * @returns {Promise<void>}
   * @throws {PortcullisError} `NOT_LOGGED_IN`, `TOKEN_INVALID`, `INVALID_ACCOUNT`
   *   (new password), `INVALID_CREDENTIALS` (old password).
   */
  async changePassword(oldPassword, newPassword) {
    await this.call("change_password", this.#authParams({ old_password: oldPassword, new_password: newPassword }));
  }

  /**
   * Sends `ping {}` and resolves with the server's `server_time_ms` (Unix time in
   * ms). Also the keep-alive of §6.
   * @returns {Promise<number>}
   */
  async ping() {
    const result = await this.call("ping", {});
    if (!isObject(result) || typeof result.server_time_ms !== "number") {
      throw new PortcullisError("protocol", `bad ping result: ${JSON.stringify(result)}`);
    }
    return result.server_time_ms;
  }

  /**
   * Sends `disconnect {}`, waits for its `{}`, then waits (at most the RPC
   * timeout) for the server to close. Resolves with the `reason` of the
   * server's `disconnected` (`"client_request"` from a conforming server).
   * @returns {Promise<string|null>}
   * @throws {PortcullisError} `"timeout"` when the server does not close in time
   *   (the client then closes); the errors of the call.
   */
  async disconnect() {
    await this.call("disconnect", {});
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        this.close();
        reject(new PortcullisError("timeout", `the server did not close within ${this.#rpcTimeoutMs} ms`));
      }, this.#rpcTimeoutMs);
    });
    try {
      await Promise.race([this.#closedPromise, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.#disconnectReason;
  }

  // ---------------------------------------------------------------------
  // Machinery.
  // ---------------------------------------------------------------------

  /**
   * The params of an **auth** method (§4): `extra` plus `token` when one is held.
   * @param {Record<string, unknown>} extra
   * @returns {Record<string, unknown>}
   */
  #authParams(extra) {
    const token = this.token;
    return token === null ? extra : { ...extra, token };
  }

  /** @param {string} token */
  #forgetToken(token) {
    if (this.#session?.token === token) this.#session = null;
  }

  #throwIfClosed() {
    if (this.#closed) throw this.#closedError();
  }

  /** @returns {PortcullisError} */
  #closedError() {
    const reason = this.#disconnectReason;
    return new PortcullisError("closed", reason ? `connection closed (${reason})` : "connection closed", { reason });
  }

  /**
   * Registers a request: a fresh id and its deadline. Returns the id, or
   * `null` (after rejecting) when the connection is closed.
   * @param {{resolve: (result: any) => void, reject: (error: PortcullisError) => void, kickSave?: boolean}} reply
   * @returns {number|null}
   */
  #register(reply) {
    if (this.#closed) {
      reply.reject(this.#closedError());
      return null;
    }
    const id = this.#nextId++;
    const timer = setTimeout(() => this.#finish("timeout", null), this.#rpcTimeoutMs);
    this.#pending.set(id, { ...reply, timer });
    return id;
  }

  /**
   * Hands a message to the `trace` option, shielding the client from it.
   * @param {"send"|"receive"} direction
   * @param {string} text
   */
  #traceMessage(direction, text) {
    if (!this.#trace) return;
    try {
      this.#trace(direction, text);
    } catch (error) {
      if (typeof globalThis.reportError === "function") globalThis.reportError(error);
      else console.error("portcullis: the trace callback threw:", error);
    }
  }

  /** @param {string} text */
  #sendText(text) {
    if (this.#closed || this.#ws.readyState !== OPEN) return;
    this.#traceMessage("send", text);
    try {
      this.#ws.send(text);
    } catch (error) {
      this.#finish("io", `send failed: ${describe(error)}`);
    }
  }

  /**
   * Routes one message from the server.
   * @param {unknown} data
   */
  #onMessage(data) {
    if (this.#closed) return;
    this.#traceMessage("receive", typeof data === "string" ? data : "(a binary message)");
    if (typeof data !== "string") {
      this.#finish("protocol", "server sent a binary message");
      return;
    }
    if (data.trim() === "") return;
    /** @type {unknown} */
    let message;
    try {
      message = JSON.parse(data);
    } catch (error) {
      this.#finish("protocol", `server sent invalid JSON (${describe(error)}): ${excerpt(data)}`);
      return;
    }
    const messages = Array.isArray(message) ? message : [message];
    for (const one of messages) {
      const problem = this.#route(one);
      if (problem !== null) {
        this.#finish("protocol", `${problem}: ${excerpt(data)}`);
        return;
      }
    }
  }

  /**
   * Routes one JSON-RPC object; returns a description of what is wrong with
   * it, or `null`.
   * @param {unknown} message
   * @returns {string|null}
   */
  #route(message) {
    if (!isObject(message)) return "server sent a non-object";
    if (message.jsonrpc !== "2.0") return 'server sent a message without "jsonrpc":"2.0"';
    const hasId = Object.hasOwn(message, "id");
    if (!hasId && typeof message.method === "string") {
      const params = message.params ?? {};
      this.#onNotification(message.method, params);
      return null;
    }
    if (!hasId || Object.hasOwn(message, "method")) return "server sent neither a response nor a notification";
    if (Object.hasOwn(message, "result") === Object.hasOwn(message, "error")) {
      return "server sent a response without exactly one of result and error";
    }
    const pending = typeof message.id === "number" ? this.#pending.get(message.id) : undefined;
    if (pending === undefined) {
      this.#emit("unmatched", message);
      return null;
    }
    this.#pending.delete(/** @type {number} */ (message.id));
    clearTimeout(pending.timer);
    if (Object.hasOwn(message, "result")) {
      pending.resolve(message.result);
    } else {
      pending.reject(rpcError(message.error));
    }
    return null;
  }

  /**
   * Records `disconnected`, answers `kicked` with the automatic save
   * (docs/protocol.md §5–§7), and reports the notification.
   * @param {string} method
   * @param {any} params
   */
  #onNotification(method, params) {
    if (method === "kicked") this.#kickSave();
    if (method === "disconnected" && isObject(params) && typeof params.reason === "string") {
      this.#disconnectReason = params.reason;
    }
    this.#emit("notification", { method, params });
    if (method === "kicked" || method === "disconnected" || method === "login_pending") {
      this.#emit(method, params);
    }
  }

  /**
   * Sends `userdata_save` with the save data and the held token (nothing
   * without a token or without data); its outcome becomes a `"kicksave"` event.
   */
  #kickSave() {
    const token = this.token;
    if (token === null || this.#save.kind === "none") return;
    /** @type {unknown} */
    let data;
    if (this.#save.kind === "data") {
      data = this.#save.data;
    } else {
      try {
        data = this.#save.provider();
      } catch (error) {
        this.#emit("kicksave", { ok: false, error: new PortcullisError("io", `save provider failed: ${describe(error)}`) });
        return;
      }
    }
    const id = this.#register({
      resolve: (result) => {
        try {
          this.#emit("kicksave", { ok: true, result: saveResult(result) });
        } catch (error) {
          this.#emit("kicksave", { ok: false, error });
        }
      },
      reject: (error) => this.#emit("kicksave", { ok: false, error }),
    });
    if (id !== null) {
      this.#sendText(JSON.stringify({ jsonrpc: "2.0", id, method: "userdata_save", params: { token, data } }));
    }
  }

  /**
   * Ends the connection (once; later calls do nothing): records why, drops the
   * token, fails every pending call, closes the socket and emits `"close"`.
   * @param {"local"|"timeout"|"eof"|"protocol"|"io"} cause
   * @param {string|null} detail
   * @param {number} [wsCode] the WebSocket close code, when the socket closed
   * @param {string} [wsReason] the WebSocket close reason text
   */
  #finish(cause, detail, wsCode, wsReason) {
    if (this.#closed) return;
    /** @type {CloseInfo} */
    const info = {
      cause,
      reason: this.#disconnectReason,
      detail,
      code: wsCode ?? null,
      wsReason: wsReason ?? null,
    };
    this.#closed = info;
    this.#session = null;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    if (this.#ws.readyState <= OPEN) {
      try {
        this.#ws.close(1000);
      } catch {
        // Already closing.
      }
    }
    for (const call of pending) {
      clearTimeout(call.timer);
      call.reject(this.#causeError(cause, detail));
    }
    this.#emit("close", info);
    this.#resolveClosed(info);
  }

  /**
   * The error a call pending at the close fails with.
   * @param {"local"|"timeout"|"eof"|"protocol"|"io"} cause
   * @param {string|null} detail
   * @returns {PortcullisError}
   */
  #causeError(cause, detail) {
    switch (cause) {
      case "timeout":
        return new PortcullisError("timeout", `no response within the RPC timeout (${this.#rpcTimeoutMs} ms)`);
      case "protocol":
        return new PortcullisError("protocol", detail ?? "protocol error");
      case "io":
        return new PortcullisError("io", detail ?? "i/o error");
      default:
        return this.#closedError();
    }
  }
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, any>}
 */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A JSON-RPC error object as a `PortcullisError` of kind `"rpc"`, or
 * `"protocol"` when it lacks an integer `code` or a string `message`.
 * @param {unknown} error
 * @returns {PortcullisError}
 */
function rpcError(error) {
  if (isObject(error) && Number.isInteger(error.code) && typeof error.message === "string") {
    return new PortcullisError("rpc", `server error ${error.code}: ${error.message}`, {
      code: error.code,
      data: error.data,
    });
  }
  return new PortcullisError("protocol", `server sent a malformed error object: ${JSON.stringify(error)}`);
}

/**
 * Reads `{version, saved_at}` off a save or load result.
 * @param {unknown} result
 * @returns {SaveResult}
 */
function saveResult(result) {
  if (!isObject(result) || !Number.isInteger(result.version) || typeof result.saved_at !== "string") {
    throw new PortcullisError("protocol", `bad userdata result: ${JSON.stringify(result)}`);
  }
  return { version: result.version, saved_at: result.saved_at };
}

/**
 * @param {unknown} error
 * @returns {string}
 */
function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The start of a message, for error texts.
 * @param {string} text
 * @returns {string}
 */
function excerpt(text) {
  return text.length <= 200 ? text : `${text.slice(0, 200)}…`;
}

// ---------------------------------------------------------------------------
// The 13-step check of `portcullis scenario` (docs/cli.md) and the takeover
// story of docs/protocol.md §6, as the demo page and the tests run them.
// ---------------------------------------------------------------------------

/** The scenario account's name starts with this; 10 random letters and digits follow. */
export const SCENARIO_ACCOUNT_PREFIX = "sc";
/** The password the scenario's fresh account is registered with. */
export const SCENARIO_PASSWORD = "portcullis-1";
/** A password that is not `SCENARIO_PASSWORD` (step 3). */
export const SCENARIO_WRONG_PASSWORD = "wrong-password";
/** The object saved in step 7 and loaded back in step 12. */
export const SCENARIO_SAVED_OBJECT = Object.freeze({ name: "wydx", bullet: 20, exp: 23 });
/** What the takeover's client A saves by itself when B's login kicks it. */
export const TAKEOVER_FINAL_OBJECT = Object.freeze({ name: "wydx", bullet: 7, exp: 58 });

/**
 * A fresh account name: `sc` and 10 random ASCII letters and digits (the
 * `register` rule of docs/protocol.md §4 is 6 to 16 of them).
 * @returns {string}
 */
export function freshAccountName() {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = new Uint8Array(10);
  globalThis.crypto.getRandomValues(bytes);
  let name = SCENARIO_ACCOUNT_PREFIX;
  for (const byte of bytes) name += alphabet[byte % alphabet.length];
  return name;
}

/**
 * Whether `token` looks like a token of docs/protocol.md §4: 64 lowercase hex characters.
 * @param {unknown} token
 * @returns {boolean}
 */
export function isToken(token) {
  return typeof token === "string" && /^[0-9a-f]{64}$/.test(token);
}

/**
 * A token's first 8 characters and `…`, for step lines.
 * @param {string|null|undefined} token
 * @returns {string}
 */
export function shortToken(token) {
  if (!token) return "-";
  return token.length > 8 ? `${token.slice(0, 8)}…` : token;
}

/**
 * What a failed call got, for the `actual` column: the code's name for a
 * server error (`NOT_LOGGED_IN`), the error text otherwise.
 * @param {unknown} error
 * @returns {string}
 */
function describeError(error) {
  if (error instanceof PortcullisError) return error.kind === "rpc" ? errorName(/** @type {number} */ (error.code)) : error.message;
  return describe(error);
}

/**
 * Runs `promise` and returns `{ok: true, value}` or `{ok: false, error}`.
 * @template T
 * @param {Promise<T>} promise
 * @returns {Promise<{ok: true, value: T} | {ok: false, error: unknown}>}
 */
async function settle(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

/**
 * Deep equality of JSON values (object member order ignored).
 * @param {unknown} a
 * @param {unknown} b
 * @returns {boolean}
 */
export function jsonEqual(a, b) {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (!isObject(a) || !isObject(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && jsonEqual(a[key], b[key]));
}

/**
 * Registers a fresh account with `SCENARIO_PASSWORD` on a connection of its
 * own (a new name when one is taken, up to 5 tries).
 * @param {string} url
 * @param {ClientOptions} options
 * @returns {Promise<string>} the account name
 * @throws {PortcullisError} when no account can be registered.
 */
export async function registerFreshAccount(url, options = {}) {
  const client = await Client.connect(url, options);
  try {
    for (let attempt = 1; ; attempt++) {
      const account = freshAccountName();
      try {
        await client.register(account, SCENARIO_PASSWORD);
        return account;
      } catch (error) {
        if (!(error instanceof PortcullisError) || error.code !== ErrorCode.ACCOUNT_EXISTS || attempt >= 5) throw error;
      }
    }
  } finally {
    client.close();
  }
}

/**
 * Runs the 13 steps of `portcullis scenario` (docs/cli.md) against the server
 * at `url` on a freshly registered account, and reports each step to
 * `options.onStep` as it finishes.
 *
 * Steps: 1 save before login (NOT_LOGGED_IN), 2 load (NOT_LOGGED_IN), 3 login
 * with a wrong password (INVALID_CREDENTIALS), 4 load (NOT_LOGGED_IN), 5 login
 * (a token), 6 load (NO_USERDATA), 7 save `{"name":"wydx","bullet":20,"exp":23}`
 * (version 1), 8 close and connect again keeping the old token, 9 login with
 * the old token (TOKEN_INVALID), 10 load (NOT_LOGGED_IN), 11 login (a new
 * token), 12 load (step 7's object, version 1), 13 logout (`{}`, then ping
 * answers and load is NOT_LOGGED_IN on the same connection).
 * @param {string} url
 * @param {ScenarioOptions} [options]
 * @returns {Promise<ScenarioReport>} `summary` is `"13/13 steps ok"` when all pass.
 * @throws {PortcullisError} when the scenario cannot run at all (no connection,
 *   no account).
 */
export async function runScenario(url, options = {}) {
  const clientOptions = {
    rpcTimeoutMs: options.rpcTimeoutMs ?? DEFAULT_RPC_TIMEOUT_MS,
    WebSocket: options.WebSocket,
    trace: options.trace,
  };
  const account = options.account ?? (await registerFreshAccount(url, clientOptions));
  const password = options.password ?? SCENARIO_PASSWORD;
  options.onAccount?.(account, password);
  /** @type {StepResult[]} */
  const steps = [];
  /**
   * @param {number} number
   * @param {string} sent
   * @param {string} expected
   * @param {string} actual
   * @param {boolean} ok
   */
  const step = (number, sent, expected, actual, ok) => {
    const result = { number, sent, expected, actual, ok };
    steps.push(result);
    options.onStep?.(result);
  };
  /**
   * Reports a step that passes when `outcome` is the server error `name`.
   * @param {number} number
   * @param {string} sent
   * @param {{ok: boolean, error?: unknown}} outcome
   * @param {keyof typeof ErrorCode} name
   */
  const expectError = (number, sent, outcome, name) => {
    const error = outcome.ok ? null : outcome.error;
    const ok = error instanceof PortcullisError && error.code === ErrorCode[name];
    step(number, sent, name, outcome.ok ? "a result (no error)" : describeError(error), ok);
  };
  /** @param {Client} client */
  const withToken = (client) => (client.token ? ` token=${shortToken(client.token)}` : "");
  const saved = { ...SCENARIO_SAVED_OBJECT };
  const savedText = JSON.stringify(saved);

  let conn = await Client.connect(url, clientOptions);
  try {
    // 1. userdata_save before login: NOT_LOGGED_IN.
    let sent = `userdata_save${withToken(conn)} ${savedText}`;
    expectError(1, sent, await settle(conn.userdataSave(saved)), "NOT_LOGGED_IN");
    // 2. userdata_load: NOT_LOGGED_IN.
    sent = `userdata_load${withToken(conn)}`;
    expectError(2, sent, await settle(conn.userdataLoad()), "NOT_LOGGED_IN");
    // 3. login with a wrong password: INVALID_CREDENTIALS.
    sent = `login account=${account} password=${SCENARIO_WRONG_PASSWORD}`;
    expectError(3, sent, await settle(conn.loginWithPassword(account, SCENARIO_WRONG_PASSWORD)), "INVALID_CREDENTIALS");
    // 4. userdata_load: NOT_LOGGED_IN.
    sent = `userdata_load${withToken(conn)}`;
    expectError(4, sent, await settle(conn.userdataLoad()), "NOT_LOGGED_IN");
    // 5. login with the right password: a token.
    sent = `login account=${account} password=${password}`;
    const first = await settle(conn.loginWithPassword(account, password));
    const oldToken = first.ok ? first.value.token : null;
    step(
      5,
      sent,
      "a token",
      first.ok ? `token ${shortToken(first.value.token)}` : describeError(first.error),
      first.ok && isToken(first.value.token) && first.value.account.toLowerCase() === account.toLowerCase(),
    );
    // 6. userdata_load: NO_USERDATA.
    sent = `userdata_load${withToken(conn)}`;
    expectError(6, sent, await settle(conn.userdataLoad()), "NO_USERDATA");
    // 7. userdata_save: version 1.
    sent = `userdata_save${withToken(conn)} ${savedText}`;
    const save = await settle(conn.userdataSave(saved));
    const firstSave = save.ok ? save.value : null;
    step(7, sent, "version 1", save.ok ? `version ${save.value.version}` : describeError(save.error), save.ok && save.value.version === 1);

    // 8. reconnect: close, open a new connection, keep the old token.
    conn.close();
    await conn.closed;
    sent = `close; connect ${url} (keep token ${shortToken(oldToken)})`;
    const reconnect = await settle(Client.connect(url, clientOptions));
    if (!reconnect.ok) {
      step(8, sent, "a new connection", describeError(reconnect.error), false);
      for (let number = 9; number <= 13; number++) step(number, "-", "-", "not run: no connection", false);
      return finishScenario(steps);
    }
    conn = reconnect.value;
    step(8, sent, "a new connection", "connected", true);

    // 9. login with the old token: TOKEN_INVALID.
    sent = oldToken ? `login token=${shortToken(oldToken)} (the old one)` : 'login token="" (step 5 gave no token)';
    expectError(9, sent, await settle(conn.loginWithToken(oldToken ?? "")), "TOKEN_INVALID");
    // 10. userdata_load: NOT_LOGGED_IN.
    sent = `userdata_load${withToken(conn)}`;
    expectError(10, sent, await settle(conn.userdataLoad()), "NOT_LOGGED_IN");
    // 11. login with the right password: a new token.
    sent = `login account=${account} password=${password}`;
    const second = await settle(conn.loginWithPassword(account, password));
    const fresh = second.ok && isToken(second.value.token) && second.value.token !== oldToken;
    step(
      11,
      sent,
      "a new token",
      second.ok ? `token ${shortToken(second.value.token)}${fresh ? "" : " (not new)"}` : describeError(second.error),
      fresh && second.ok && second.value.account.toLowerCase() === account.toLowerCase(),
    );
    // 12. userdata_load: the object saved in step 7.
    sent = `userdata_load${withToken(conn)}`;
    const load = await settle(conn.userdataLoad());
    const same =
      load.ok &&
      jsonEqual(load.value.data, saved) &&
      load.value.version === 1 &&
      (firstSave === null || (firstSave.version === load.value.version && firstSave.saved_at === load.value.saved_at));
    let actual = load.ok ? `v${load.value.version} ${JSON.stringify(load.value.data)}` : describeError(load.error);
    if (load.ok && firstSave && firstSave.saved_at !== load.value.saved_at) {
      actual += ` saved_at ${load.value.saved_at} (saved ${firstSave.saved_at})`;
    }
    step(12, sent, "step 7's object, v1", actual, same);
    // 13. logout: {}, the connection stays open (ping answers, userdata_load is NOT_LOGGED_IN).
    sent = `logout${withToken(conn)}; ping; userdata_load`;
    const logout = await settle(conn.logout());
    const ping = await settle(conn.ping());
    const after = await settle(conn.userdataLoad());
    const afterError = after.ok ? null : after.error;
    const ok =
      logout.ok &&
      ping.ok &&
      afterError instanceof PortcullisError &&
      afterError.code === ErrorCode.NOT_LOGGED_IN &&
      conn.token === null &&
      !conn.isClosed;
    actual = [
      logout.ok ? "{}" : describeError(logout.error),
      ping.ok ? "ping" : describeError(ping.error),
      after.ok ? `v${after.value.version}` : describeError(after.error),
    ].join(", ");
    step(13, sent, "{}, ping, NOT_LOGGED_IN", actual, ok);
    return finishScenario(steps);
  } finally {
    conn.close();
  }
}

/**
 * The report of a finished table of steps or checks.
 * @param {StepResult[]} steps
 * @param {string} [what]
 * @returns {ScenarioReport}
 */
function finishScenario(steps, what = "steps") {
  const passed = steps.filter((step) => step.ok).length;
  const total = steps.length;
  const ok = passed === total && total > 0;
  const summary = ok ? `${passed}/${total} ${what} ok` : `${passed}/${total} ${what} ok, ${total - passed} FAILED`;
  return { ok, steps, summary };
}

/**
 * Plays the duplicate-login story of docs/protocol.md §6 with two clients on
 * one fresh account, like `portcullis scenario --takeover`: A logs in and
 * saves `SCENARIO_SAVED_OBJECT`, sets `TAKEOVER_FINAL_OBJECT` as its kick save
 * data; B logs in with the password; A gets `kicked`, saves by itself and is
 * closed; B gets `login_pending`, then its token; B loads A's automatic save.
 * Each message is reported to `options.onMessage` as it happens, then seven
 * checks to `options.onStep`.
 * @param {string} url
 * @param {TakeoverOptions} [options]
 * @returns {Promise<ScenarioReport>} `summary` is `"7/7 checks ok"` when all pass.
 * @throws {PortcullisError} when the story cannot run at all.
 */
export async function runTakeover(url, options = {}) {
  const rpcTimeoutMs = options.rpcTimeoutMs ?? DEFAULT_RPC_TIMEOUT_MS;
  const clientOptions = { rpcTimeoutMs, WebSocket: options.WebSocket, trace: options.trace };
  const account = options.account ?? (await registerFreshAccount(url, clientOptions));
  const password = options.password ?? SCENARIO_PASSWORD;
  options.onAccount?.(account, password);
  const say = options.onMessage ?? (() => {});
  const first = { ...SCENARIO_SAVED_OBJECT };
  const last = { ...TAKEOVER_FINAL_OBJECT };
  /** @type {string[]} */
  const aSeen = [];
  /** @type {string[]} */
  const bSeen = [];
  /** @type {{ok: true, result: SaveResult}|{ok: false, error: unknown}|null} */
  let autoSave = null;

  const a = await Client.connect(url, clientOptions);
  const b = await Client.connect(url, clientOptions);
  try {
    a.on("notification", ({ method, params }) => {
      aSeen.push(takeoverLabel(method, params));
      say("A", `<- ${method} ${JSON.stringify(params)}`);
      if (method === "kicked" && a.token) say("A", `-> userdata_save ${JSON.stringify({ data: last })} (sent by the client on kicked)`);
    });
    a.on("kicksave", (outcome) => {
      autoSave = outcome;
      aSeen.push(outcome.ok ? "save" : `save ${describeError(outcome.error)}`);
      say("A", outcome.ok ? `<- automatic save result ${JSON.stringify(outcome.result)}` : `<- automatic save ${describeError(outcome.error)}`);
    });
    a.on("close", () => say("A", "   connection closed"));
    b.on("notification", ({ method, params }) => {
      bSeen.push(takeoverLabel(method, params));
      say("B", `<- ${method} ${JSON.stringify(params)}`);
    });

    // A logs in and saves the first object.
    say("A", `-> login ${JSON.stringify({ account, password })}`);
    const aLogin = await settle(a.loginWithPassword(account, password));
    say("A", aLogin.ok ? `<- login result {"account":${JSON.stringify(aLogin.value.account)},"token":"${shortToken(aLogin.value.token)}"}` : `<- login ${describeError(aLogin.error)}`);
    say("A", `-> userdata_save ${JSON.stringify({ data: first })}`);
    const aSave = await settle(a.userdataSave(first));
    say("A", aSave.ok ? `<- userdata_save result ${JSON.stringify(aSave.value)}` : `<- userdata_save ${describeError(aSave.error)}`);
    a.setSaveData(last);
    say("A", `   kick save data set to ${JSON.stringify(last)}`);

    // B logs in to the same account: A is kicked, saves by itself, and goes.
    say("B", `-> login ${JSON.stringify({ account, password })}`);
    const bLoginCall = settle(b.loginWithPassword(account, password));
    const aGone = aLogin.ok ? a.closed : Promise.resolve();
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    let timer;
    const gaveUp = new Promise((resolve) => {
      timer = setTimeout(() => resolve("timeout"), 3 * rpcTimeoutMs);
    });
    const [bLogin] = await Promise.race([Promise.all([bLoginCall, aGone]), gaveUp.then(() => [null])]);
    clearTimeout(timer);
    if (bLogin === null) {
      say("-", "   (gave up waiting)");
      if (!a.isClosed) aSeen.push("still open");
    } else {
      bSeen.push(bLogin.ok ? "login" : `login ${describeError(bLogin.error)}`);
      say("B", bLogin.ok ? `<- login result {"account":${JSON.stringify(bLogin.value.account)},"token":"${shortToken(bLogin.value.token)}"}` : `<- login ${describeError(bLogin.error)}`);
    }

    // B loads: A's automatic save.
    say("B", "-> userdata_load {}");
    const bLoad = await settle(b.userdataLoad());
    say("B", bLoad.ok ? `<- userdata_load result ${JSON.stringify(bLoad.value)}` : `<- userdata_load ${describeError(bLoad.error)}`);

    /** @type {StepResult[]} */
    const checks = [];
    /**
     * @param {string} sent
     * @param {string} expected
     * @param {string} actual
     * @param {boolean} ok
     */
    const check = (sent, expected, actual, ok) => {
      const result = { number: checks.length + 1, sent, expected, actual, ok };
      checks.push(result);
      options.onStep?.(result);
    };
    check(
      "A: login",
      "a token",
      aLogin.ok ? `token ${shortToken(aLogin.value.token)}` : describeError(aLogin.error),
      aLogin.ok && isToken(aLogin.value.token),
    );
    check(
      "A: first userdata_save",
      "version 1",
      aSave.ok ? `version ${aSave.value.version}` : describeError(aSave.error),
      aSave.ok && aSave.value.version === 1,
    );
    const bExpected = "login_pending, login";
    const bActual = bSeen.length ? bSeen.join(", ") : "(none)";
    check("B: messages in order", bExpected, bActual, bActual === bExpected);
    const aExpected = "kicked, save, disconnected";
    const aActual = aSeen.length ? aSeen.join(", ") : "(none)";
    check("A: messages in order", aExpected, aActual, aActual === aExpected);
    // Set by the kicksave listener, which the type checker does not follow.
    const auto = /** @type {{ok: true, result: SaveResult}|{ok: false, error: unknown}|null} */ (
      /** @type {unknown} */ (autoSave)
    );
    check(
      "A: automatic save",
      "version 2",
      auto === null ? "no automatic save" : auto.ok ? `version ${auto.result.version}` : describeError(auto.error),
      auto !== null && auto.ok && auto.result.version === 2,
    );
    const aToken = aLogin.ok ? aLogin.value.token : null;
    check(
      "B: login",
      "a new token",
      bLogin === null ? "no login result" : bLogin.ok ? `token ${shortToken(bLogin.value.token)}` : describeError(bLogin.error),
      bLogin !== null && bLogin.ok && isToken(bLogin.value.token) && bLogin.value.token !== aToken,
    );
    check(
      "B: userdata_load",
      "A's automatic save",
      bLoad.ok ? `v${bLoad.value.version} ${JSON.stringify(bLoad.value.data)}` : describeError(bLoad.error),
      bLoad.ok &&
        auto !== null &&
        auto.ok &&
        jsonEqual(bLoad.value.data, last) &&
        bLoad.value.version === auto.result.version &&
        bLoad.value.saved_at === auto.result.saved_at,
    );
    return finishScenario(checks, "checks");
  } finally {
    a.close();
    b.close();
  }
}

/**
 * A short name for a notification in the takeover's message sequences: the
 * method when its params are as docs/protocol.md §5–§6 say for a takeover,
 * `method(params)` otherwise.
 * @param {string} method
 * @param {any} params
 * @returns {string}
 */
function takeoverLabel(method, params) {
  const reason = isObject(params) ? params.reason : undefined;
  let expected = false;
  if (method === "login_pending") expected = reason === "replacing_session";
  else if (method === "kicked") expected = reason === "duplicate_login" && Number.isInteger(params.save_deadline_ms);
  else if (method === "disconnected") expected = reason === "duplicate_login";
  return expected ? method : `${method}(${JSON.stringify(params)})`;
}

/**
 * @typedef {object} ClientOptions
 * @property {number} [rpcTimeoutMs] How long a request may wait for its response,
 *   in ms (default 10,000, docs/protocol.md §7). Keep it above the server's
 *   kick-save deadline (default 5 s): a `login` that takes over another session
 *   is answered only after that session's kick ends (§6).
 * @property {number} [connectTimeoutMs] How long `Client.connect` may take, in ms (default 10,000).
 * @property {any} [WebSocket] The WebSocket constructor (default: the global `WebSocket`).
 * @property {(direction: "send"|"receive", text: string) => void} [trace] Called with
 *   every text message sent and received, as is (for logs and demos: it sees
 *   passwords and tokens).
 */

/**
 * @typedef {object} Pending A request sent and not yet answered.
 * @property {(result: any) => void} resolve
 * @property {(error: PortcullisError) => void} reject
 * @property {ReturnType<typeof setTimeout>} timer Its RPC timeout.
 */

/**
 * @typedef {object} CloseInfo Why the connection closed.
 * @property {"local"|"timeout"|"eof"|"protocol"|"io"} cause `local`: `close()`;
 *   `timeout`: the RPC timeout; `eof`: the server closed; `protocol`: the server
 *   sent something that is not JSON-RPC; `io`: sending failed.
 * @property {string|null} reason The `reason` of the server's `disconnected`, if one came.
 * @property {string|null} detail What went wrong, for `protocol` and `io`.
 * @property {number|null} code The WebSocket close code (1000, 1009, ...) when the socket reported one.
 * @property {string|null} wsReason The WebSocket close reason text, when the socket reported one.
 */

/**
 * @typedef {object} LoginResult The result of `login` (docs/protocol.md §4).
 * @property {string} account The account as spelled at registration.
 * @property {string} token The live token: 64 lowercase hex characters.
 */

/**
 * @typedef {object} SaveResult The result of `userdata_save` (docs/protocol.md §4).
 * @property {number} version 1, 2, 3, ... per account.
 * @property {string} saved_at The commit time, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
 */

/**
 * @typedef {object} LoadResult The result of `userdata_load` (docs/protocol.md §4).
 * @property {Record<string, unknown>} data The newest saved object.
 * @property {number} version Its version.
 * @property {string} saved_at Its commit time.
 */

/**
 * @typedef {object} BatchEntry One member of `Client.batch`.
 * @property {string} method
 * @property {unknown} [params] Sent as given (default `{}`); no token is added.
 * @property {boolean} [notify] Send as a notification (no `id`, never answered).
 */

/**
 * @typedef {{ok: true, result: any} | {ok: false, error: PortcullisError}} BatchOutcome
 */

/**
 * @typedef {object} StepResult One line of a scenario or takeover table.
 * @property {number} number 1, 2, 3, ...
 * @property {string} sent What was sent (or checked).
 * @property {string} expected The expected outcome.
 * @property {string} actual The actual outcome.
 * @property {boolean} ok Whether they agree.
 */

/**
 * @typedef {object} ScenarioReport
 * @property {boolean} ok Whether every step passed.
 * @property {StepResult[]} steps Every step, in order.
 * @property {string} summary `"13/13 steps ok"`, or `"12/13 steps ok, 1 FAILED"`.
 */

/**
 * @typedef {object} ScenarioOptions
 * @property {(step: StepResult) => void} [onStep] Called as each step finishes.
 * @property {(account: string, password: string) => void} [onAccount] Called with the account used.
 * @property {string} [account] Use this account (it must have no user data yet)
 *   instead of registering a fresh one.
 * @property {string} [password] Its password (default `SCENARIO_PASSWORD`).
 * @property {number} [rpcTimeoutMs] The clients' RPC timeout (default 10,000).
 * @property {any} [WebSocket] The WebSocket constructor.
 * @property {(direction: "send"|"receive", text: string) => void} [trace] Sees every
 *   message of every connection of the run (see `ClientOptions.trace`).
 */

/**
 * @typedef {ScenarioOptions & {onMessage?: (side: "A"|"B"|"-", text: string) => void}} TakeoverOptions
 */
