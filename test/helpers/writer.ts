import { spawn } from 'node:child_process';

export interface HeldFile {
  /** Writes `text` (no newline added) with one write(2); resolves once it returned. */
  write(text: string): Promise<void>;
  /** fsync(2) of the file. */
  fsync(): Promise<void>;
  /** Closes the file; the process exits. Resolves with its exit code and stderr. */
  close(): Promise<{ code: number | null; stderr: string }>;
  /** SIGKILL by its pid if it is still running (cleanup). */
  kill(): void;
}

const SCRIPT = [
  'import json, os, sys',
  'fd = os.open(sys.argv[1], {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_APPEND}[sys.argv[2]], 0o644)',
  'for line in sys.stdin:',
  '    cmd, _, text = line.rstrip("\\n").partition(" ")',
  '    if cmd == "close":',
  '        os.close(fd); print("done", flush=True); break',
  '    if cmd == "fsync": os.fsync(fd)',
  '    else: os.write(fd, json.loads(text).encode())',
  '    print("done", flush=True)',
].join('\n');

/**
 * A process (python3) holding `file` open for writing (`w`: created or
 * truncated; `a`: appended to) in `cwd`, writing when told: how a test
 * makes another process act on the file between two writes.
 */
export function holdForWriting(cwd: string, file: string, mode: 'w' | 'a' = 'w'): HeldFile {
  const p = spawn('python3', ['-u', '-c', SCRIPT, file, mode], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
  p.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; });
  p.stdin!.on('error', () => undefined); // EPIPE once it died: the next command reports it
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  let answered = 0;
  const send = async (line: string): Promise<void> => {
    p.stdin!.write(`${line}\n`);
    answered++;
    for (const end = Date.now() + 30_000; out.split('done\n').length - 1 < answered; await new Promise((r) => setTimeout(r, 10))) {
      if (Date.now() > end || p.exitCode !== null) throw new Error(`the writer of ${file} did not answer "${line}": ${err}`);
    }
  };
  return {
    write: (text) => send(`write ${JSON.stringify(text)}`),
    fsync: () => send('fsync'),
    async close() {
      await send('close');
      return { code: await exited, stderr: err };
    },
    kill: () => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); },
  };
}
