/**
 * Running the sandbox as a child and passing signals through.
 *
 * bwrap dies of SIGINT itself and then (--die-with-parent) kills CMD with
 * SIGKILL, so it must not be in the terminal's foreground process group: it
 * is started in a session of its own, and CMD in another one (--new-session).
 * The terminal still reaches CMD as its stdin/stdout/stderr; the signals the
 * terminal or a supervisor sends to `cowfs run` (Ctrl-C, SIGTERM, a window
 * resize…) are passed on to CMD's process group, as the terminal would.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import type { SandboxCommand } from './bwrap.js';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

export interface SandboxExit {
  /** CMD's exit status; 128+N when it was killed by signal N (what a shell reports). */
  code: number;
}

function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** CMD's process group, seen from here: bwrap → the sandbox's init (pid 1 inside) → CMD (pid 2 inside). */
export function commandGroup(bwrapPid: number): number | undefined {
  for (const init of childrenOf(bwrapPid)) {
    for (const pid of childrenOf(init)) {
      try {
        const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
        if (!/^NSpid:.*\s2$/m.test(status)) continue;
        // The field after the parenthesised command name: state, ppid, pgrp.
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      } catch {
        // It exited meanwhile.
      }
    }
  }
  return undefined;
}

/**
 * Closes what this process inherited beyond stdin, stdout and stderr: such a
 * descriptor (one without close-on-exec; Node opens all of its own with it)
 * would pass through bwrap into the sandbox, be it a socket or a directory
 * outside it. Only the three standard streams reach CMD.
 */
function closeInheritedDescriptors(): void {
  for (const name of fs.readdirSync('/proc/self/fdinfo')) {
    const fd = Number(name);
    if (fd <= 2) continue;
    try {
      const flags = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & 0o2000000) === 0) fs.closeSync(fd);
    } catch {
      // The directory listing's own descriptor, closed by now.
    }
  }
}

/** Runs the sandbox with this process's stdio; resolves with CMD's exit status once it and the sandbox are gone. */
export function runSandbox(cmd: SandboxCommand): Promise<SandboxExit> {
  closeInheritedDescriptors();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd.file, cmd.args, { env: cmd.env, stdio: 'inherit', detached: true });
    /** Sends `sig` to CMD's process group; false when there is none (yet, or any more). */
    const toCommand = (sig: NodeJS.Signals): boolean => {
      const pid = child.pid;
      if (pid === undefined || child.exitCode !== null) return false;
      const group = commandGroup(pid);
      try {
        if (group !== undefined) process.kill(-group, sig);
      } catch {
        // The group ended between the lookup and the kill.
      }
      return group !== undefined;
    };
    const handlers = new Map<NodeJS.Signals, () => void>();
    for (const sig of FORWARDED) {
      // Before CMD exists there is nothing to pass it to: a stop request then stops the start.
      handlers.set(sig, () => {
        if (!toCommand(sig) && sig !== 'SIGWINCH' && child.exitCode === null) child.kill('SIGKILL');
      });
    }
    // Ctrl-Z: CMD's group is in a session without a terminal, where SIGTSTP is ignored; stop it, then
    // this process (the shell sees a stopped job); `fg`/`bg` continue both.
    handlers.set('SIGTSTP', () => {
      toCommand('SIGSTOP');
      process.kill(process.pid, 'SIGSTOP');
    });
    handlers.set('SIGCONT', () => void toCommand('SIGCONT'));
    for (const [sig, fn] of handlers) process.on(sig, fn);
    const done = () => {
      for (const [sig, fn] of handlers) process.off(sig, fn);
    };
    child.once('error', (err: NodeJS.ErrnoException) => {
      done();
      reject(err.code === 'ENOENT'
        ? new Error('unshare (util-linux) is not installed')
        : err);
    });
    child.once('exit', (code, signal) => {
      done();
      resolve({ code: signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 1) });
    });
  });
}
