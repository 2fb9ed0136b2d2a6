// A minimal RFC 6455 WebSocket server on node:http and node:crypto, for the
// client's tests (Node 20 has a WebSocket client but no server). Enough for the
// client: the opening handshake, masked client frames of any length,
// fragmented text messages, ping/pong and close; the server sends unmasked
// text, binary and close frames. Plain HTTP GETs go to `serveHttp`, else 404.

import { createHash } from "node:crypto";
import { createServer } from "node:http";

/** The GUID of RFC 6455 §1.3. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/**
 * One accepted WebSocket connection, seen from the server.
 */
export class WsConnection {
  /** @param {import("node:net").Socket} socket */
  constructor(socket) {
    /** @type {import("node:net").Socket} */
    this.socket = socket;
    /** @type {(text: string) => void} Called with every complete text message. */
    this.onmessage = () => {};
    /** @type {(info: {code: number|null, reason: string, byClient: boolean}) => void} Called once, when the connection ends. */
    this.onclose = () => {};
    /** @type {Buffer} Bytes received and not yet parsed. */
    this.buffer = Buffer.alloc(0);
    /** @type {Buffer[]} The fragments of the message being received. */
    this.fragments = [];
    /** @type {number|null} The opcode of the fragmented message. */
    this.fragmentOpcode = null;
    /** Whether a close frame was sent. */
    this.closeSent = false;
    /** Whether the connection ended. */
    this.ended = false;
    /** @type {{code: number|null, reason: string}|null} The client's close frame, if any. */
    this.clientClose = null;
    socket.on("data", (chunk) => this.#receive(chunk));
    socket.on("close", () => this.#end());
    socket.on("error", () => this.#end());
  }

  /** @param {string} text Sends one text message. */
  send(text) {
    this.#frame(0x1, Buffer.from(text, "utf8"));
  }

  /** @param {Buffer} bytes Sends one binary message. */
  sendBinary(bytes) {
    this.#frame(0x2, bytes);
  }

  /**
   * Sends a close frame with `code` and `reason` and ends the TCP connection.
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = 1000, reason = "") {
    if (this.closeSent || this.ended) return;
    const text = Buffer.from(reason, "utf8");
    const payload = Buffer.alloc(2 + text.length);
    payload.writeUInt16BE(code, 0);
    text.copy(payload, 2);
    this.#frame(0x8, payload);
    this.closeSent = true;
    this.socket.end();
  }

  /** Drops the TCP connection without a close frame. */
  destroy() {
    this.socket.destroy();
  }

  /**
   * @param {number} opcode
   * @param {Buffer} payload
   */
  #frame(opcode, payload) {
    if (this.closeSent || this.ended) return;
    let header;
    if (payload.length < 126) {
      header = Buffer.from([0x80 | opcode, payload.length]);
    } else if (payload.length < 65536) {
      header = Buffer.alloc(4);
      header[0] = 0x80 | opcode;
      header[1] = 126;
      header.writeUInt16BE(payload.length, 2);
    } else {
      header = Buffer.alloc(10);
      header[0] = 0x80 | opcode;
      header[1] = 127;
      header.writeBigUInt64BE(BigInt(payload.length), 2);
    }
    this.socket.write(Buffer.concat([header, payload]));
  }

  /** @param {Buffer} chunk */
  #receive(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const frame = this.#parse();
      if (frame === null) return;
      this.#handle(frame);
    }
  }

  /**
   * Takes one complete frame off the buffer, or returns `null` when more bytes are needed.
   * @returns {{fin: boolean, opcode: number, payload: Buffer}|null}
   */
  #parse() {
    const buf = this.buffer;
    if (buf.length < 2) return null;
    const fin = (buf[0] & 0x80) !== 0;
    const opcode = buf[0] & 0x0f;
    const masked = (buf[1] & 0x80) !== 0;
    let length = buf[1] & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (buf.length < 4) return null;
      length = buf.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (buf.length < 10) return null;
      length = Number(buf.readBigUInt64BE(2));
      offset = 10;
    }
    const maskOffset = offset;
    if (masked) offset += 4;
    if (buf.length < offset + length) return null;
    const payload = Buffer.from(buf.subarray(offset, offset + length));
    if (masked) {
      for (let i = 0; i < payload.length; i++) payload[i] ^= buf[maskOffset + (i % 4)];
    }
    this.buffer = buf.subarray(offset + length);
    return { fin, opcode, payload };
  }

  /** @param {{fin: boolean, opcode: number, payload: Buffer}} frame */
  #handle({ fin, opcode, payload }) {
    switch (opcode) {
      case 0x0: // continuation
      case 0x1: // text
      case 0x2: {
        // binary
        if (opcode !== 0x0) this.fragmentOpcode = opcode;
        this.fragments.push(payload);
        if (!fin) return;
        const whole = Buffer.concat(this.fragments);
        const kind = this.fragmentOpcode;
        this.fragments = [];
        this.fragmentOpcode = null;
        if (kind === 0x1) this.onmessage(whole.toString("utf8"));
        return;
      }
      case 0x8: {
        // close: answer it and end
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : null;
        this.clientClose = { code, reason: payload.subarray(2).toString("utf8") };
        if (!this.closeSent) {
          this.#frame(0x8, payload.subarray(0, 2));
          this.closeSent = true;
        }
        this.socket.end();
        return;
      }
      case 0x9: // ping
        this.#frame(0xa, payload);
        return;
      default: // pong and reserved opcodes
        return;
    }
  }

  #end() {
    if (this.ended) return;
    this.ended = true;
    const byClient = this.clientClose !== null && !this.closeSent;
    this.onclose({ code: this.clientClose?.code ?? null, reason: this.clientClose?.reason ?? "", byClient });
  }
}

/**
 * Starts a WebSocket server on 127.0.0.1 on a free port.
 * @param {(conn: WsConnection) => void} onConnection called for every upgrade
 * @param {{serveHttp?: (path: string) => {type: string, body: string}|null}} [options]
 * @returns {Promise<{url: string, port: number, connections: Set<WsConnection>, close: () => Promise<void>}>}
 */
export function startWsServer(onConnection, options = {}) {
  /** @type {Set<WsConnection>} */
  const connections = new Set();
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    const page = request.method === "GET" ? options.serveHttp?.(path) : null;
    if (page) {
      response.writeHead(200, { "content-type": page.type });
      response.end(page.body);
    } else {
      response.writeHead(404, { "content-type": "text/plain" });
      response.end("not found\n");
    }
  });
  server.on("upgrade", (request, socket) => {
    const key = request.headers["sec-websocket-key"];
    if (typeof key !== "string" || String(request.headers.upgrade).toLowerCase() !== "websocket") {
      socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
      return;
    }
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.setNoDelay(true);
    const conn = new WsConnection(/** @type {import("node:net").Socket} */ (socket));
    connections.add(conn);
    socket.on("close", () => connections.delete(conn));
    onConnection(conn);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      resolve({
        url: `ws://127.0.0.1:${port}/`,
        port,
        connections,
        close: () =>
          new Promise((done) => {
            for (const conn of connections) conn.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
