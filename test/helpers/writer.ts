import { spawn } from 'node:child_process';

export interface HeldFile {
  /** Resolves once the file is open. */
  opened: Promise<void>;
  /** Writes `text` (no newline added) with one write(2); resolves once it returned. */
  write(text: string): Promise<void>;
  /** One read(2) of up to `n` bytes at the file's offset: the text, or the errno's name when it failed. */
  read(n: number): Promise<string | { errno: string }>;
  /** fsync(2) of the file. */
  fsync(): Promise<void>;
  /**
   * Starts appending lines `${prefix} 1\n`, `${prefix} 2\n`… (one write(2) each) from a thread of its
   * own, as fast as the mount takes them, until `stop`: a writer busy while the test does something else.
   * Resolves once the first line is written.
   */
  burst(prefix: string): Promise<void>;
  /** Ends a burst once its write in progress returned; resolves to how many lines it wrote. */
  stop(): Promise<number>;
  /** Closes the file; the process exits. Resolves with its exit code and stderr. */
  close(): Promise<{ code: number | null; stderr: string }>;
  /** SIGKILL by its pid if it is still running (cleanup). */
  kill(): void;
}

const SCRIPT = [
  'import errno, json, os, sys, threading',
  'fd = os.open(sys.argv[1], {"r": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_APPEND}[sys.argv[2]], 0o644)',
  'print("done", flush=True)',
  'for line in sys.stdin:',
  '    cmd, _, arg = line.rstrip("\\n").partition(" ")',
  '    if cmd == "close":',
  '        os.close(fd); print("done", flush=True); break',
  '    if cmd == "fsync": os.fsync(fd)',
  '    elif cmd == "burst":',
  '        stop, first, lines = threading.Event(), threading.Event(), [0]',
  '        def burst(prefix=arg):',
  '            while not stop.is_set():',
  '                lines[0] += 1; os.write(fd, f"{prefix} {lines[0]}\\n".encode()); first.set()',
  '        thread = threading.Thread(target=burst); thread.start(); first.wait()',
  '    elif cmd == "stop":',
  '        stop.set(); thread.join(); print("done", lines[0], flush=True); continue',
  '    elif cmd == "read":',
  '        try: got = os.read(fd, int(arg)).decode()',
  '        except OSError as e: got = {"errno": errno.errorcode[e.errno]}',
  '        print("done", json.dumps(got), flush=True); continue',
  '    else: os.write(fd, json.loads(arg).encode())',
  '    print("done", flush=True)',
].join('\n');

/**
 * A process (python3) holding `file` open in `cwd` — `r`: for reading; `w`:
 * for writing, created or truncated; `a`: appended to — reading or writing
 * when told: how a test makes another process act on the file in between.
 */
export function holdFile(cwd: string, file: string, mode: 'r' | 'w' | 'a'): HeldFile {
  const p = spawn('python3', ['-u', '-c', SCRIPT, file, mode], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
  p.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; });
  p.stdin!.on('error', () => undefined); // EPIPE once it died: the next command reports it
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  const answers = () => out.split('\n').filter((l) => l.startsWith('done'));
  let asked = 0;
  /** The answer to the `asked`-th request (the open is the first), once it came: its value. */
  const answer = async (what: string): Promise<string> => {
    const n = ++asked;
    for (const end = Date.now() + 30_000; answers().length < n; await new Promise((r) => setTimeout(r, 10))) {
      if (Date.now() > end || p.exitCode !== null) throw new Error(`the holder of ${file} did not answer "${what}": ${err}`);
    }
    return answers()[n - 1]!.slice('done '.length);
  };
  const send = (line: string): Promise<string> => {
    p.stdin!.write(`${line}\n`);
    return answer(line);
  };
  const opened = answer('open').then(() => undefined);
  opened.catch(() => undefined); // reported by the first command, or by whoever awaits `opened`
  return {
    opened,
    write: async (text) => { await send(`write ${JSON.stringify(text)}`); },
    read: async (n) => JSON.parse(await send(`read ${n}`)) as string | { errno: string },
    fsync: async () => { await send('fsync'); },
    burst: async (prefix) => { await send(`burst ${prefix}`); },
    stop: async () => Number(await send('stop')),
    async close() {
      await send('close');
      return { code: await exited, stderr: err };
    },
    kill: () => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); },
  };
}
