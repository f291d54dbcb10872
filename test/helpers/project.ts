import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Writes `rel` under `root`, making its directories. */
export function writeFile(root: string, rel: string, content: string): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), content);
}

/**
 * The sample project the integration tests give agents, as users have them:
 * a package with an `npm test` (test.js) that loads a dependency from
 * node_modules (git-ignored). `extra` adds files before the first commit.
 */
export function writeSampleProject(ws: string, extra: (ws: string) => void = () => {}): void {
  writeFile(ws, 'package.json', JSON.stringify({ name: 'sample', version: '1.0.0', scripts: { test: 'node test.js' } }, null, 2));
  writeFile(ws, 'src/index.js', "const pad = require('left-pad');\nmodule.exports = (s) => pad(s, 8);\n");
  writeFile(ws, 'src/util/strings.js', 'exports.upper = (s) => s.toUpperCase();\n');
  writeFile(ws, 'test.js', "const f = require('./src/index.js');\nif (f('x') !== '       x') throw new Error('bad');\nconsole.log('ok');\n");
  writeFile(ws, 'node_modules/left-pad/package.json', JSON.stringify({ name: 'left-pad', version: '1.3.0', main: 'index.js' }));
  writeFile(ws, 'node_modules/left-pad/index.js', 'module.exports = (s, n) => String(s).padStart(n);\n');
  extra(ws);
  for (const args of [['init', '-q', '-b', 'main'], ['add', '-A'], ['-c', 'user.email=t@t', '-c', 'user.name=t', 'commit', '-qm', 'initial']]) {
    execFileSync('git', args, { cwd: ws, stdio: 'ignore' });
  }
}
