import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { LOG_NAME, PID_NAME } from '../../daemon/protocol.js';
import { Client } from '../client.js';
import { globals } from '../context.js';
import { CliError, emit } from '../output.js';

interface DaemonOpts { detach?: boolean; fuse: string }

/**
 * Waits until the daemon just started answers on its socket (its pid in the pid file: a daemon
 * already running for the workspace answers too, and the new one exits), or its process ends.
 */
async function waitReady(
  stateDir: string, child: { pid?: number; exitCode: number | null; signalCode: NodeJS.Signals | null }, logFrom: number,
): Promise<void> {
  const socket = path.join(stateDir, 'daemon.sock');
  const pidFile = path.join(stateDir, PID_NAME);
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    const owner = Number((fs.existsSync(pidFile) ? fs.readFileSync(pidFile, 'utf8') : '').trim());
    try {
      if (owner !== child.pid) throw new Error('not ours yet');
      (await Client.connect({ stateDir, socket })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  // What this daemon wrote (the log is appended to by every start): its last line, when it is the
  // plain "cowfs: ..." of a refused start, says it best.
  const log = path.join(stateDir, LOG_NAME);
  const lines = fs.existsSync(log) ? fs.readFileSync(log).subarray(logFrom).toString('utf8').trim().split('\n') : [];
  const last = lines.at(-1) ?? '';
  if (child.exitCode !== null && last.startsWith('cowfs: ')) throw new CliError(last.slice('cowfs: '.length));
  throw new CliError(`the daemon did not start; the end of ${log}:\n${lines.slice(-5).join('\n')}`);
}

export function register(program: Command): void {
  program
    .command('daemon')
    .description('run the daemon of a workspace: it holds every agent\'s mount and serves the API')
    .option('--detach', 'run in the background (pid file and log in the state directory)')
    .option('--fuse <adapter>', 'FUSE adapter: libfuse3 (native/), libfuse2 (fuse-native), or auto: libfuse3 when it loads', 'auto')
    .action(async (o: DaemonOpts, cmd: Command) => {
      const g = globals(cmd);
      const workspace = path.resolve(g.workspace ?? process.cwd());
      const stateDir = path.resolve(g.stateDir ?? path.join(workspace, '.cowfs'));
      // Loaded here, not at the top: every other verb is a thin client and should not pay for lmdb, pino and FUSE.
      const { adapterNamed, defaultAdapter } = await import('../../fuse/adapters.js');
      const { Daemon } = await import('../../daemon/daemon.js');
      let adapter;
      if (o.fuse === 'auto') {
        const chosen = await defaultAdapter();
        adapter = chosen.adapter;
        if (chosen.fallback) process.stderr.write(`cowfs: using ${adapter.name}: ${chosen.fallback}\n`);
      } else {
        adapter = await adapterNamed(o.fuse).catch((err: Error) => {
          throw new CliError(`--fuse ${o.fuse}: ${err.message}`);
        });
      }
      if (o.detach) {
        fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
        const logFile = path.join(stateDir, LOG_NAME);
        const logFrom = fs.existsSync(logFile) ? fs.statSync(logFile).size : 0;
        const out = fs.openSync(logFile, 'a');
        const args = [process.argv[1]!, 'daemon', '--workspace', workspace, '--state-dir', stateDir, '--fuse', o.fuse];
        const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', out, out] });
        child.unref();
        await waitReady(stateDir, child, logFrom);
        emit(g, { pid: child.pid, workspace, stateDir }, () => `cowfs daemon started (pid ${child.pid}) for ${workspace}`);
        return;
      }
      const daemon = await Daemon.start({ workspace, stateDir, adapter, logToStderr: true });
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = () => {
          if (stopping) return;
          stopping = true;
          daemon.stop().finally(resolve);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
        process.on('SIGHUP', stop);
      });
    });
}
