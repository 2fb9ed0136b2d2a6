// Type declarations of portcullis.js, the JavaScript client of Portcullis
// (docs/protocol.md; WebSocket transport §1.1). Hand-written to match the module's
// JSDoc; clients/js/README.md documents the behaviour.

/** The default RPC timeout in milliseconds (docs/protocol.md §7): 10,000. */
export declare const DEFAULT_RPC_TIMEOUT_MS: number;
/** The default time `Client.connect` may take, in milliseconds: 10,000. */
export declare const DEFAULT_CONNECT_TIMEOUT_MS: number;

/** The error codes of docs/protocol.md §3, by name. Clients branch on `code` only. */
export declare const ErrorCode: Readonly<{
  PARSE_ERROR: -32700;
  INVALID_REQUEST: -32600;
  METHOD_NOT_FOUND: -32601;
  INVALID_PARAMS: -32602;
  INTERNAL_ERROR: -32603;
  NOT_LOGGED_IN: 1001;
  INVALID_CREDENTIALS: 1002;
  TOKEN_INVALID: 1003;
  NO_USERDATA: 1004;
  ALREADY_LOGGED_IN: 1005;
  SESSION_CLOSING: 1006;
  RATE_LIMITED: 1007;
  LOGIN_IN_PROGRESS: 1008;
  ACCOUNT_EXISTS: 1009;
  INVALID_ACCOUNT: 1010;
  SERVER_BUSY: 1011;
  SERVICE_UNAVAILABLE: 1012;
}>;

/** The name of an error code (`1001` → `"NOT_LOGGED_IN"`), or `"error <code>"` for one §3 does not list. */
export declare function errorName(code: number): string;

/** How a call failed. */
export type ErrorKind = "rpc" | "timeout" | "closed" | "protocol" | "io";

/**
 * Why a call failed: `"rpc"` a server error (`code`, `message`, `data`), `"timeout"`
 * no response within the RPC timeout (the client closed the connection), `"closed"`
 * the connection is closed (`reason` from the server's `disconnected`), `"protocol"`
 * the server sent something that is not JSON-RPC, `"io"` the WebSocket failed.
 */
export declare class PortcullisError extends Error {
  constructor(kind: ErrorKind, message: string, extra?: { code?: number | null; data?: unknown; reason?: string | null });
  readonly kind: ErrorKind;
  /** The server's error code (kind `"rpc"`), else `null`. */
  readonly code: number | null;
  /** The server's `data` member (kind `"rpc"`), e.g. `{field: "token"}` for -32602. */
  readonly data: unknown;
  /** The server's close reason (kind `"closed"`), e.g. `"duplicate_login"`, else `null`. */
  readonly reason: string | null;
  /** The name of `code` (`"NOT_LOGGED_IN"`), or `kind` when this is not a server error. */
  readonly codeName: string;
}

/** Options of `Client.connect`. */
export interface ClientOptions {
  /**
   * How long a request may wait for its response, in ms (default 10,000, §7).
   * Keep it above the server's kick-save deadline (default 5 s): a `login` that
   * takes over another session is answered only after that session's kick ends.
   */
  rpcTimeoutMs?: number;
  /** How long `Client.connect` may take, in ms (default 10,000). */
  connectTimeoutMs?: number;
  /** The WebSocket constructor (default: the global `WebSocket`). */
  WebSocket?: unknown;
  /** Called with every text message sent and received, as is (it sees passwords and tokens). */
  trace?: (direction: "send" | "receive", text: string) => void;
}

/** Why the connection closed (the detail of the `"close"` event, and of `client.closed`). */
export interface CloseInfo {
  /**
   * `local`: `close()`; `timeout`: the RPC timeout; `eof`: the server closed;
   * `protocol`: the server sent something that is not JSON-RPC; `io`: sending failed.
   */
  cause: "local" | "timeout" | "eof" | "protocol" | "io";
  /** The `reason` of the server's `disconnected` (docs/protocol.md §5), if one came. */
  reason: string | null;
  /** What went wrong, for `protocol` and `io`. */
  detail: string | null;
  /** The WebSocket close code (1000, 1009, ...) when the socket reported one. */
  code: number | null;
  /** The WebSocket close reason text, when the socket reported one. */
  wsReason: string | null;
}

/** The result of `login` (docs/protocol.md §4). */
export interface LoginResult {
  /** The account as spelled at registration. */
  account: string;
  /** The live token: 64 lowercase hex characters. */
  token: string;
}

/** The result of `userdata_save` (docs/protocol.md §4). */
export interface SaveResult {
  /** 1, 2, 3, ... per account. */
  version: number;
  /** The commit time, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC). */
  saved_at: string;
}

/** The result of `userdata_load` (docs/protocol.md §4). */
export interface LoadResult extends SaveResult {
  /** The newest saved object. */
  data: Record<string, unknown>;
}

/** A server notification (docs/protocol.md §5), or one of a service or an operator. */
export interface Notification {
  method: string;
  params: any;
}

/** `kicked` params (docs/protocol.md §5). */
export interface KickedParams {
  reason: string;
  save_deadline_ms: number;
}

/** The outcome of the automatic save sent on `kicked`. */
export type KickSaveOutcome = { ok: true; result: SaveResult } | { ok: false; error: PortcullisError };

/** The events of a `Client` and their details. */
export interface ClientEvents {
  /** Every server notification, the three below included. */
  notification: Notification;
  login_pending: { reason: string };
  /** Reported after the automatic save it triggers is sent. */
  kicked: KickedParams;
  disconnected: { reason: string };
  /** Only when an automatic save was sent (a token and save data were held). */
  kicksave: KickSaveOutcome;
  /** A response whose `id` is `null` or matches no call, whole. */
  unmatched: { jsonrpc: "2.0"; id: unknown; result?: unknown; error?: { code: number; message: string; data?: unknown } };
  /** Once, when the connection closed. */
  close: CloseInfo;
}

/** One member of `Client.batch`. */
export interface BatchEntry {
  method: string;
  /** Sent as given (default `{}`); no token is added. */
  params?: unknown;
  /** Send as a notification (no `id`, never answered). */
  notify?: boolean;
}

/** One outcome of `Client.batch`, in entry order. */
export type BatchOutcome = { ok: true; result: any } | { ok: false; error: PortcullisError };

/**
 * A connection to a Portcullis server over WebSocket, with a method for every
 * call of docs/protocol.md §4. It never reconnects by itself; on an RPC timeout it
 * closes; on `kicked` it saves the data of `setSaveData`/`setSaveProvider`; it holds
 * its token only while the connection lives.
 */
export declare class Client {
  /** Opens a WebSocket to `url` (`ws://HOST:PORT/` or `wss://HOST:PORT/`); rejects with kind `"io"` or `"timeout"`. */
  static connect(url: string, options?: ClientOptions): Promise<Client>;
  /** Use `Client.connect`; this wraps a WebSocket that is connecting or open. */
  constructor(ws: unknown, options?: ClientOptions);

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(type: K, listener: (detail: ClientEvents[K]) => void): () => void;
  on(type: string, listener: (detail: any) => void): () => void;
  /** Removes a listener. */
  off<K extends keyof ClientEvents>(type: K, listener: (detail: ClientEvents[K]) => void): void;
  off(type: string, listener: (detail: any) => void): void;
  /** The next event of `type`; rejects on `timeoutMs`, or when the connection closes first (unless `type` is `"close"`). */
  next<K extends keyof ClientEvents>(type: K, timeoutMs?: number): Promise<ClientEvents[K]>;
  next(type: string, timeoutMs?: number): Promise<any>;

  /** The held token; `null` when none (dropped on logout, on TOKEN_INVALID in `login`, and at the close). */
  readonly token: string | null;
  /** The account of the held token, as the server spelled it. */
  readonly account: string | null;
  /** Whether the connection is closed (or closing). */
  readonly isClosed: boolean;
  /** Resolves once the connection is closed, with why. */
  readonly closed: Promise<CloseInfo>;
  /** The `reason` of the server's `disconnected`, once one has arrived. */
  readonly disconnectReason: string | null;
  /** The RPC timeout in ms. */
  readonly rpcTimeoutMs: number;

  /** Sets the data saved by itself on `kicked`. */
  setSaveData(data: unknown): void;
  /** Sets a callback giving the data to save on `kicked`, called at the kick. */
  setSaveProvider(provider: () => unknown): void;
  /** A kick then sends no save. */
  clearSaveData(): void;

  /** Sends a request and resolves with its `result`; `params` as given, no token added. */
  call(method: string, params?: unknown): Promise<any>;
  /** Sends a notification (no `id`, never answered); throws kind `"closed"` when closed. */
  notify(method: string, params?: unknown): void;
  /** Sends the entries as one batch frame; resolves with one outcome per entry. */
  batch(entries: BatchEntry[]): Promise<BatchOutcome[]>;
  /** Sends `text` as one text message, as is. */
  sendRaw(text: string): void;
  /** Closes from the client side (close 1000); pending calls fail with kind `"closed"`. */
  close(): void;

  /** Token login when a token for `account` is held, else (or when it is refused) password login. */
  login(account: string, password: string): Promise<LoginResult>;
  loginWithPassword(account: string, password: string): Promise<LoginResult>;
  loginWithToken(token: string): Promise<LoginResult>;
  /** Ends the session; the connection stays open. */
  logout(): Promise<void>;
  /** Numbers beyond a JavaScript number's exact range lose precision. */
  userdataSave(data: unknown): Promise<SaveResult>;
  userdataLoad(): Promise<LoadResult>;
  /** Resolves with the registered account name; does not log in. */
  register(account: string, password: string): Promise<string>;
  changePassword(oldPassword: string, newPassword: string): Promise<void>;
  /** Resolves with `server_time_ms` (Unix time, ms). */
  ping(): Promise<number>;
  /** Sends `disconnect`, waits for the server to close; resolves with its reason (`"client_request"`). */
  disconnect(): Promise<string | null>;
}

// ---------------------------------------------------------------------------
// The 13-step check of `portcullis scenario` and the takeover story.
// ---------------------------------------------------------------------------

export declare const SCENARIO_ACCOUNT_PREFIX: string;
export declare const SCENARIO_PASSWORD: string;
export declare const SCENARIO_WRONG_PASSWORD: string;
export declare const SCENARIO_SAVED_OBJECT: Readonly<{ name: string; bullet: number; exp: number }>;
export declare const TAKEOVER_FINAL_OBJECT: Readonly<{ name: string; bullet: number; exp: number }>;

/** `sc` and 10 random ASCII letters and digits. */
export declare function freshAccountName(): string;
/** Whether `token` is 64 lowercase hex characters. */
export declare function isToken(token: unknown): boolean;
/** A token's first 8 characters and `…`; `"-"` for none. */
export declare function shortToken(token: string | null | undefined): string;
/** Deep equality of JSON values, object member order ignored. */
export declare function jsonEqual(a: unknown, b: unknown): boolean;
/** Registers a fresh account with `SCENARIO_PASSWORD`; resolves with its name. */
export declare function registerFreshAccount(url: string, options?: ClientOptions): Promise<string>;

/** One line of a scenario or takeover table. */
export interface StepResult {
  number: number;
  sent: string;
  expected: string;
  actual: string;
  ok: boolean;
}

/** A finished table. */
export interface ScenarioReport {
  ok: boolean;
  steps: StepResult[];
  /** `"13/13 steps ok"`, or `"12/13 steps ok, 1 FAILED"`. */
  summary: string;
}

export interface ScenarioOptions {
  onStep?: (step: StepResult) => void;
  onAccount?: (account: string, password: string) => void;
  /** Use this account (no user data yet) instead of registering a fresh one. */
  account?: string;
  password?: string;
  rpcTimeoutMs?: number;
  WebSocket?: unknown;
  trace?: (direction: "send" | "receive", text: string) => void;
}

export interface TakeoverOptions extends ScenarioOptions {
  onMessage?: (side: "A" | "B" | "-", text: string) => void;
}

/** The 13 steps of `portcullis scenario` (docs/cli.md) against `url`. */
export declare function runScenario(url: string, options?: ScenarioOptions): Promise<ScenarioReport>;
/** The duplicate-login story of docs/protocol.md §6; `"7/7 checks ok"` when all pass. */
export declare function runTakeover(url: string, options?: TakeoverOptions): Promise<ScenarioReport>;
