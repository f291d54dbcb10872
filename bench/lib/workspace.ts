/**
 * The benchmark's workspace: a git repo of a real, published TypeScript
 * project with its dependencies installed, built once under a cache
 * directory and reused while its spec is unchanged.
 *
 * The project is rxjs 7.8.1 from the npm registry: its tarball ships the
 * TypeScript sources (src/, 251 .ts files), its tsconfig.json files and its
 * build output (dist/). Its own devDependencies (a 2021 tool chain) are
 * replaced by a pinned set of today's tools (TypeScript, ESLint, webpack,
 * Babel, Jest, Mocha…), which is what gives node_modules its size: ≥ 20,000
 * files in the full workspace. `--quick` uses a smaller set.
 */
import fs from 'node:fs';
import path from 'node:path';
import { q, sh } from './sh.js';

export const PROJECT = 'rxjs@7.8.1';

const DEV_FULL: Record<string, string> = {
  typescript: '5.4.5', '@types/node': '20.14.2', eslint: '8.57.0',
  '@typescript-eslint/parser': '7.13.0', '@typescript-eslint/eslint-plugin': '7.13.0', 'eslint-plugin-import': '2.29.1',
  webpack: '5.92.0', 'webpack-cli': '5.1.4', 'ts-loader': '9.5.1', rollup: '4.18.0',
  mocha: '10.4.0', chai: '4.4.1', sinon: '18.0.0', jest: '29.7.0', 'ts-node': '10.9.2', prettier: '3.3.2',
  '@babel/core': '7.24.7', '@babel/preset-env': '7.24.7', '@babel/runtime': '7.24.7',
  'core-js': '3.37.1', lodash: '4.17.21', 'date-fns': '3.6.0',
};

const DEV_QUICK: Record<string, string> = {
  typescript: '5.4.5', '@types/node': '20.14.2', eslint: '8.57.0', lodash: '4.17.21',
};

/** What node loads in the "require" workload: big, many-module packages present in each workspace. */
export const REQUIRE_FULL = ['typescript', 'eslint', 'webpack', '@babel/core', '@babel/preset-env', 'lodash', 'rollup', 'jest'];
export const REQUIRE_QUICK = ['typescript', 'eslint', 'lodash'];

export interface Workspace {
  /** The git repo. */
  dir: string;
  /** A tar of small files (from node_modules) for the unpacking workload. */
  smallTar: string;
  smallFiles: number;
  files: number;
  nodeModulesFiles: number;
  entries: number;
  bytes: number;
  /** The tsconfig `tsc --noEmit -p` checks. */
  tsconfig: string;
  require: string[];
}

const QUICK_TSCONFIG = 'tsconfig.bench-quick.json';
const QUICK_TSCONFIG_BODY = {
  extends: './src/tsconfig.esm.json', include: [], files: ['src/internal/operators/map.ts'],
};

// Bump when what the workspace holds changes: a cached one is rebuilt.
const SPEC = 4;

async function count(dir: string, test: string): Promise<number> {
  return Number((await sh(`find . ${test} | wc -l`, { cwd: dir })).stdout.trim());
}

export async function prepareWorkspace(cacheRoot: string, quick: boolean, log: (s: string) => void): Promise<Workspace> {
  const kind = quick ? 'quick' : 'full';
  const base = path.join(cacheRoot, kind);
  const dir = path.join(base, 'ws');
  const stampFile = path.join(base, 'ready.json');
  const spec = { SPEC, PROJECT, dev: quick ? DEV_QUICK : DEV_FULL, tsconfig: quick ? QUICK_TSCONFIG_BODY : null };
  const ready = fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8').includes(JSON.stringify(spec));
  if (!ready) {
    log(`building the ${kind} workspace in ${dir} (${PROJECT} + npm install; once, then cached)`);
    fs.rmSync(base, { recursive: true, force: true });
    const tmp = path.join(base, 'tmp');
    fs.mkdirSync(tmp, { recursive: true });
    const packed = (await sh(`npm pack ${q(PROJECT)} --silent`, { cwd: tmp, timeoutMs: 300_000 })).stdout.trim().split('\n').pop()!;
    fs.mkdirSync(dir);
    await sh(`tar -xzf ${q(path.join(tmp, packed))} --strip-components=1 -C ${q(dir)}`);
    const pkgPath = path.join(dir, 'package.json');
    const pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8')) as Record<string, unknown>;
    // Its scripts call tools of 2021 that are not installed; its devDependencies are replaced.
    delete pkg.scripts;
    pkg.devDependencies = spec.dev;
    fs.writeFileSync(pkgPath, `${JSON.stringify(pkg, null, 2)}\n`);
    fs.writeFileSync(path.join(dir, '.gitignore'), 'node_modules/\n*.tsbuildinfo\n');
    // --quick type-checks one module and what it imports (41 files), not all 251.
    if (quick) fs.writeFileSync(path.join(dir, QUICK_TSCONFIG), `${JSON.stringify(QUICK_TSCONFIG_BODY, null, 2)}\n`);
    // --ignore-scripts: nothing may download binaries; none of these needs a build step.
    await sh('npm install --ignore-scripts --no-audit --no-fund --loglevel=error', { cwd: dir, timeoutMs: 900_000 });
    const gitEnv = {
      GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@localhost', GIT_COMMITTER_NAME: 'bench',
      GIT_COMMITTER_EMAIL: 'bench@localhost', GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
    };
    await sh('git init -q -b main && git add -A && git commit -q -m "rxjs 7.8.1 as published"', { cwd: dir, env: gitEnv });
    // The small files to unpack: files under 64 KiB from node_modules, in a stable order.
    const want = quick ? 2000 : 5000;
    await sh(`find node_modules -type f -size -64k | sort | awk 'NR <= ${want}' > ${q(path.join(base, 'small.list'))} && ` +
      `tar -cf ${q(path.join(base, 'small.tar'))} -T ${q(path.join(base, 'small.list'))}`, { cwd: dir });
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.writeFileSync(stampFile, JSON.stringify(spec));
  }
  const nodeModulesFiles = await count(path.join(dir, 'node_modules'), '-type f');
  if (!quick && nodeModulesFiles < 20_000) throw new Error(`node_modules has ${nodeModulesFiles} files, fewer than 20,000`);
  const bytes = Number((await sh('du -sb . | cut -f1', { cwd: dir })).stdout.trim());
  const smallFiles = Number((await sh(`tar -tf ${q(path.join(base, 'small.tar'))} | wc -l`)).stdout.trim());
  return {
    dir, smallTar: path.join(base, 'small.tar'), smallFiles,
    files: await count(dir, '-type f'), nodeModulesFiles, entries: await count(dir, ''), bytes,
    tsconfig: quick ? QUICK_TSCONFIG : 'src/tsconfig.esm.json', require: quick ? REQUIRE_QUICK : REQUIRE_FULL,
  };
}
