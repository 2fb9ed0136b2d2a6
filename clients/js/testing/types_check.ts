// Compile-only check of portcullis.d.ts (never run):
//   npx -y -p typescript tsc --noEmit --strict --target es2022 --module nodenext --moduleResolution nodenext clients/js/testing/types_check.ts

import { Client, ErrorCode, PortcullisError, runScenario, type LoadResult } from "../portcullis.js";

async function main(): Promise<void> {
  const client = await Client.connect("ws://127.0.0.1:7778/", { rpcTimeoutMs: 5000 });
  const off = client.on("kicked", (p) => console.log(p.reason, p.save_deadline_ms.toFixed()));
  client.on("close", (info) => console.log(info.cause, info.reason));
  client.on("arena_state", (p) => console.log(p));
  client.setSaveProvider(() => ({ level: 1 }));
  const login = await client.login("netease1", "123");
  const token: string = login.token;
  const load: LoadResult = await client.userdataLoad();
  const v: number = load.version;
  try {
    await client.userdataSave({ x: 1 });
  } catch (e) {
    if (e instanceof PortcullisError && e.code === ErrorCode.NOT_LOGGED_IN) console.log(e.codeName);
  }
  const outcomes = await client.batch([{ method: "ping" }, { method: "x", notify: true }]);
  for (const o of outcomes) if (!o.ok) console.log(o.error.kind);
  const report = await runScenario("ws://x/", { onStep: (s) => console.log(s.number, s.ok) });
  const summary: string = report.summary;
  const next = await client.next("kicksave", 100);
  if (next.ok) console.log(next.result.saved_at);
  off();
  console.log(token, v, summary);
}
void main();
