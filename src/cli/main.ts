import { Command, CommanderError } from 'commander';
import { CliError } from './output.js';
import * as commit from './commands/commit.js';
import * as config from './commands/config.js';
import * as conflicts from './commands/conflicts.js';
import * as daemon from './commands/daemon.js';
import * as diff from './commands/diff.js';
import * as events from './commands/events.js';
import * as exportCmd from './commands/export.js';
import * as gc from './commands/gc.js';
import * as have from './commands/have.js';
import * as importCmd from './commands/import.js';
import * as log from './commands/log.js';
import * as land from './commands/land.js';
import * as ls from './commands/ls.js';
import * as mount from './commands/mount.js';
import * as replay from './commands/replay.js';
import * as resolve from './commands/resolve.js';
import * as rm from './commands/rm.js';
import * as run from './commands/run.js';
import * as show from './commands/show.js';
import * as status from './commands/status.js';
import * as undo from './commands/undo.js';
import * as unmount from './commands/unmount.js';

const program = new Command('cowfs')
  .description('copy-on-write views of one project for many AI coding agents')
  // [dir], not <dir>: `cowfs land AGENT --workspace` names the landing's target without one.
  .option('--workspace [dir]', 'the workspace (default: found from the current directory upward)')
  .option('--state-dir <dir>', 'the state directory (default: WORKSPACE/.cowfs)')
  .option('--json', 'print results as JSON')
  .showHelpAfterError()
  .exitOverride();

for (const verb of [daemon, mount, run, unmount, ls, status, commit, conflicts, resolve, rm, log, show, events, replay, config, diff, land, undo]) verb.register(program);
for (const verb of [exportCmd, importCmd, have, gc]) verb.register(program);

// A reader that stops early (`cowfs log | head`) is no error: end quietly, as git does (killed by SIGPIPE: 141).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(141);
  throw err;
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Only cowfs's own arguments: what follows `--` belongs to the command `cowfs run` runs.
  const own = process.argv.indexOf('--');
  const json = (own < 0 ? process.argv : process.argv.slice(0, own)).includes('--json');
  if (err instanceof CommanderError) {
    // Commander printed the usage error on stderr; a script reading --json output gets it as JSON too.
    if (json && err.exitCode !== 0) process.stdout.write(`${JSON.stringify({ error: { code: 'usage', message: err.message.replace(/^error: /, '') } })}\n`);
    process.exit(err.exitCode);
  }
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof CliError ? err.code : 'internal';
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  else process.stderr.write(`cowfs: ${message}\n`);
  process.exit(1);
}
