#!/usr/bin/env python3
"""A Portcullis backend service in Python, standard library only (docs/services.md).

It connects to the server like a client, registers with the shared key
(`serve --service-key`), and answers the clients' calls that the server
forwards to it (docs/protocol.md section 8):

  dice_roll {"sides":N}          -> {"roll":R,"sides":N}   (anyone; error 4000 for bad sides)
  dice_stats {"token":T}         -> {"account":A,"rolls":N} (logged-in players only: "auth")
  dice_whoami {}                 -> {"name":NAME}           (which instance answered)
  echo {...,"delay_ms":N}        -> the params back, after N ms (for tests and latency checks)

It keeps a per-account roll count in memory, hears session_started and
session_ended, and with --welcome greets every player who logs in through
service_notify. Run:

  python3 examples/services/dice.py --connect 127.0.0.1:7777 --key KEY
"""

import argparse
import json
import random
import socket
import sys
import threading
import time


class Service:
    def __init__(self, sock, welcome):
        self.sock = sock
        self.file = sock.makefile("r", encoding="utf-8", newline="\n")
        self.write_lock = threading.Lock()
        self.next_id = 0
        self.pending = {}  # id -> (event, [response]) of our own calls
        self.rolls = {}  # account -> rolls by that account
        self.welcome = welcome

    def send(self, message):
        line = json.dumps(message, separators=(",", ":")) + "\n"
        with self.write_lock:
            self.sock.sendall(line.encode("utf-8"))

    def call(self, method, params, wait=True):
        """Sends a request of our own (service_register, service_notify, ping)."""
        with self.write_lock:
            self.next_id += 1
            call_id = "py-%d" % self.next_id
        done = threading.Event()
        slot = [None]
        self.pending[call_id] = (done, slot)
        self.send({"jsonrpc": "2.0", "id": call_id, "method": method, "params": params})
        if wait:
            done.wait(10)
            return slot[0]
        return None

    # --- the methods this service adds ---------------------------------

    def dice_roll(self, params, session):
        sides = params.get("sides", 6)
        if not isinstance(sides, int) or isinstance(sides, bool) or not 2 <= sides <= 1000:
            raise ServiceError(4000, "sides must be an integer from 2 to 1000", {"field": "sides"})
        if session.get("account"):
            self.rolls[session["account"]] = self.rolls.get(session["account"], 0) + 1
        return {"roll": random.randint(1, sides), "sides": sides}

    def dice_stats(self, params, session):
        account = session["account"]
        return {"account": account, "rolls": self.rolls.get(account, 0)}

    def dice_whoami(self, params, session):
        return {"name": self.name}

    def echo(self, params, session):
        delay = params.get("delay_ms", 0)
        if isinstance(delay, (int, float)) and delay > 0:
            time.sleep(delay / 1000.0)
        return params

    METHODS = {"dice_roll": False, "dice_stats": True, "dice_whoami": False, "echo": False}

    # --- the loop ---------------------------------------------------------

    def handle_request(self, message):
        method = message.get("method")
        params = message.get("params") or {}
        handler = getattr(self, method, None) if method in self.METHODS else None
        try:
            if handler is None:
                raise ServiceError(-32601, "method not found")
            result = handler(params.get("params") or {}, params.get("session") or {})
            reply = {"jsonrpc": "2.0", "id": message.get("id"), "result": result}
        except ServiceError as e:
            reply = {"jsonrpc": "2.0", "id": message.get("id"), "error": e.to_json()}
        if "id" in message:
            self.send(reply)

    def handle_notification(self, message):
        method, params = message.get("method"), message.get("params") or {}
        if method == "session_started":
            print("session_started %s %s" % (params.get("conn"), params.get("account")), flush=True)
            if self.welcome:
                threading.Thread(
                    target=self.call,
                    args=("service_notify", {"conn": params["conn"], "method": "dice_welcome",
                                              "params": {"account": params["account"]}}, False),
                    daemon=True,
                ).start()
        elif method == "session_ended":
            print("session_ended %s %s %s" % (params.get("conn"), params.get("account"), params.get("reason")),
                  flush=True)
        elif method in self.METHODS:
            # A client's notification, forwarded as one: run it, answer nothing.
            threading.Thread(target=self.handle_request, args=(message,), daemon=True).start()

    def run(self, key, name):
        self.name = name
        reader = threading.Thread(target=self.read_loop, daemon=True)
        reader.start()
        methods = [{"name": m, "auth": auth} for m, auth in self.METHODS.items()]
        reply = self.call("service_register", {"key": key, "name": name, "methods": methods})
        if reply is None or "error" in reply:
            print("registration refused: %s" % json.dumps(reply), file=sys.stderr, flush=True)
            return 1
        print("registered %s %s" % (name, ",".join(reply["result"]["methods"])), flush=True)
        while reader.is_alive():
            reader.join(15)
            if reader.is_alive():
                self.call("ping", {}, wait=False)  # keep-alive: the idle timeout applies to services
        return 0

    def read_loop(self):
        for line in self.file:
            if not line.strip():
                continue
            message = json.loads(line)
            if isinstance(message, list):
                continue
            if "method" not in message:  # a response to one of our calls
                waiting = self.pending.pop(message.get("id"), None)
                if waiting:
                    waiting[1][0] = message
                    waiting[0].set()
            elif "id" in message:
                threading.Thread(target=self.handle_request, args=(message,), daemon=True).start()
            else:
                self.handle_notification(message)


class ServiceError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", default="127.0.0.1:7777", help="the server's TCP address")
    parser.add_argument("--key", required=True, help="the server's --service-key")
    parser.add_argument("--name", default="dice", help="this service's name")
    parser.add_argument("--welcome", action="store_true", help="greet every player who logs in")
    args = parser.parse_args()
    host, _, port = args.connect.rpartition(":")
    sock = socket.create_connection((host.strip("[]"), int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Service(sock, args.welcome).run(args.key, args.name)


if __name__ == "__main__":
    sys.exit(main())
