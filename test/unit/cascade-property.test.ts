import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cascade } from '../../src/cascade/cascade.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { prng } from '../helpers/random.js';
import { openOverlay, readFile, removeTempDirs, snapshot, writeFile } from '../helpers/core.js';

const FILES = ['a.txt', 'b.txt', 'c.txt'];
const LINES = 24;
const AGENTS: [string, string][] = [['p', ''], ['c1', 'p'], ['c2', 'p'], ['c3', 'p'], ['g1', 'c1'], ['g2', 'c1'], ['gg', 'g1']];

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

/** What a clean line-wise merge must give when every edit replaces a whole line in place. */
function composed(base: string[], ours: string[], theirs: string[]): string[] {
  return base.map((b, i) => (ours[i] !== b ? ours[i]! : theirs[i]!));
}

const linesOf = (s: string) => s.replace(/\n$/, '').split('\n');
const headContent = (ov: Overlay, agent: string, f: string) => commitFiles(ov, ov.agent(agent).head)[f]!;
const readWorkspace = (ov: Overlay, f: string) => fs.readFileSync(ov.workspace.realPath(f), 'utf8');

describe('property: random concurrent edits cascade down a 3-level tree', () => {
  const seeds = Number(process.env.COWFS_CASCADE_SEEDS ?? 30);
  for (let n = 0; n < seeds; n++) {
    const seed = 777_000 + n * 131;
    it(`seed ${seed}`, async () => {
      const rand = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const files: Record<string, string> = {};
      for (const f of FILES) files[f] = `${Array.from({ length: LINES }, (_, i) => `${f} line ${i}`).join('\n')}\n`;
      const { ov } = await openOverlay(files);
      opened.push(ov);
      const cascade = new Cascade(ov);
      for (const [name, parent] of AGENTS) {
        ov.createAgent(name, parent || null);
        if (name === 'p') ov.commit('p', 'start');
      }
      let edit = 0;
      for (let round = 0; round < 14; round++) {
        // Some agents edit a few lines of a file in their working tree.
        for (let k = 0; k < 4; k++) {
          const agent = pick(AGENTS)[0];
          if (Object.keys(ov.agent(agent).conflicts ?? {}).length > 0) continue;
          const f = pick(FILES);
          const ls = linesOf(readFile(ov.tree(agent), f));
          for (let j = 0; j < 1 + Math.floor(rand() * 2); j++) ls[Math.floor(rand() * LINES)] = `${agent} edit ${edit++}`;
          writeFile(ov.tree(agent), f, `${ls.join('\n')}\n`);
        }
        // One agent commits; remember what everyone had, to check the cascade.
        const committer = pick(AGENTS)[0];
        const before = new Map<string, { work: Record<string, string>; base: number | null; clear: boolean }>();
        for (const [name] of AGENTS) {
          const a = ov.agent(name);
          before.set(name, {
            work: Object.fromEntries(FILES.map((f) => [f, readFile(ov.tree(name), f)])),
            base: a.base, clear: Object.keys(a.conflicts ?? {}).length === 0,
          });
        }
        ov.commit(committer, `round ${round}`);
        const report = cascade.afterCommitOf(committer);
        for (const name of report.rebased) {
          const a = ov.agent(name);
          const was = before.get(name)!;
          const parent = a.parent!;
          if (!was.clear) continue;
          // The tree the agent was based on: exactly its base commit (it may lag its parent's head after a pause).
          const parentWas = commitFiles(ov, was.base!);
          for (const f of FILES) {
            const now = readFile(ov.tree(name), f);
            if (a.conflicts?.[f]) {
              // No write is lost: a conflict keeps the agent's own lines (those it changed from its base) between the markers.
              const baseLines = linesOf(parentWas[f]!);
              linesOf(was.work[f]!).forEach((l, i) => {
                if (l !== baseLines[i]) expect(now, `${seed} ${name} ${f}`).toContain(l);
              });
              continue;
            }
            const expected = composed(linesOf(parentWas[f]!), linesOf(was.work[f]!), linesOf(headContent(ov, parent, f)));
            expect(linesOf(now), `seed ${seed} round ${round}: clean merge of ${f} in ${name}`).toEqual(expected);
          }
        }
        // Resolve some conflicts (ours or theirs), which resumes the cascade below.
        for (const [name] of AGENTS) {
          for (const path of Object.keys(ov.agent(name).conflicts ?? {})) if (rand() < 0.5) cascade.resolve(name, path, rand() < 0.5 ? 'ours' : 'theirs');
        }
      }
      for (const [name] of AGENTS) expect(snapshot(ov.replay(name), ov), `replay of ${name}`).toEqual(snapshot(ov.tree(name).tree, ov));
    });
  }
});

/** The files as a commit holds them. */
function commitFiles(ov: Overlay, commit: number): Record<string, string> {
  return Object.fromEntries(FILES.map((f) => {
    const r = ov.commitView(commit).lookup(f);
    return [f, r && r.src === 'layer' && r.entry.kind === 'file' ? ov.blobs.get(r.entry.hash).toString() : readWorkspace(ov, f)];
  }));
}
