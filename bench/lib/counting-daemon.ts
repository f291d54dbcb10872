/**
 * A cowfs daemon whose agents' trees count every call the FUSE adapter makes
 * into them (= every kernel request that reached JS) and the time spent in
 * each. Run as its own process by `npm run bench -- --profile`:
 *
 *   node dist/bench/lib/counting-daemon.js WORKSPACE STATE_DIR OUT.json
 *
 * SIGUSR1 resets the counters; SIGUSR2 writes them to OUT.json
 * ({seq, ops: {name: {n, ms}}}); SIGTERM stops the daemon (it unmounts).
 *
 * It loads the daemon from dist/src by path at run time (not a static
 * import), so the bench keeps compiling while src/ changes under it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [workspace, stateDir, outFile] = process.argv.slice(2);
if (!workspace || !stateDir || !outFile) {
  process.stderr.write('usage: counting-daemon WORKSPACE STATE_DIR OUT.json\n');
  process.exit(2);
}

const root = path.resolve(import.meta.dirname, '../../..');
const load = (rel: string) => import(pathToFileURL(path.join(root, 'dist/src', rel)).href) as Promise<any>;

const counts = new Map<string, { n: number; ns: bigint }>();
let seq = 0;

function counting<T extends object>(tree: T): T {
  return new Proxy(tree, {
    get(target, key) {
      const v = Reflect.get(target, key, target) as unknown;
      if (typeof v !== 'function' || typeof key !== 'string') return v;
      return (...args: unknown[]) => {
        const t0 = process.hrtime.bigint();
        try {
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        } finally {
          let c = counts.get(key);
          if (!c) counts.set(key, (c = { n: 0, ns: 0n }));
          c.n++;
          c.ns += process.hrtime.bigint() - t0;
        }
      };
    },
  });
}

const { Daemon } = await load('daemon/daemon.js');
const { adapterNamed } = await load('fuse/adapters.js');
const base = await adapterNamed('libfuse2');
const adapter = {
  name: `${base.name} (counting)`,
  mount: (mp: string, tree: object, opts: unknown) => base.mount(mp, counting(tree), opts),
};
const daemon = await Daemon.start({ workspace, stateDir, adapter, logToStderr: false });

process.on('SIGUSR1', () => counts.clear());
process.on('SIGUSR2', () => {
  const ops: Record<string, { n: number; ms: number }> = {};
  for (const [k, c] of counts) ops[k] = { n: c.n, ms: Number(c.ns) / 1e6 };
  fs.writeFileSync(`${outFile}.tmp`, JSON.stringify({ seq: ++seq, ops }));
  fs.renameSync(`${outFile}.tmp`, outFile);
});
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  daemon.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
