import fs from 'node:fs';
import path from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { initHash } from './hash.js';
import { ScratchFiles } from './scratch.js';

/**
 * One lmdb environment per workspace. Commits use `noSync`: a committed
 * transaction reaches the OS and survives the daemon's death (what close(2)
 * promises); `syncToDisk()` is the fsync(2) promise (FUSE-NOTES: 3,300 vs
 * 79,000 commits/s).
 */
export interface StoreDbs {
  root: RootDatabase;
  /** Small blobs, inline: key `hash:size[:n]` → bytes. */
  blobs: Database<Buffer, string>;
  /** Every blob's record (inline or a file under blobs/). */
  blobMeta: Database<BlobRecord, string>;
  agents: Database<any, string>;
  /** Working layers: [agent, path] → entry. */
  layers: Database<any, [string, string]>;
  commits: Database<any, number>;
  /** Frozen commit layers: [commitId, path] → entry. */
  commitEntries: Database<any, [number, string]>;
  /** The event log: seq → event. */
  events: Database<any, number>;
  /** [agent, seq] → null: the events of one agent, in order. */
  agentEvents: Database<null, [string, number]>;
  /** Files being written in scratch: scratch file name → {agent, path, meta} (crash recovery). */
  dirty: Database<any, string>;
  meta: Database<any, string>;
}

export interface BlobRecord {
  size: number;
  /** true: bytes under blobs/ in the state directory; false: inline in `blobs`. */
  file: boolean;
}

export class Store {
  readonly dbs: StoreDbs;
  readonly blobDir: string;
  readonly scratchDir: string;
  readonly scratch: ScratchFiles;
  private dataFd: number | undefined;

  private constructor(readonly stateDir: string, dbs: StoreDbs) {
    this.dbs = dbs;
    this.blobDir = path.join(stateDir, 'blobs');
    this.scratchDir = path.join(stateDir, 'scratch');
    fs.mkdirSync(this.blobDir, { recursive: true });
    fs.mkdirSync(this.scratchDir, { recursive: true });
    this.scratch = new ScratchFiles(this.scratchDir);
  }

  static async open(stateDir: string): Promise<Store> {
    await initHash();
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    // Keeps the state directory out of `git status` in the workspace without writing outside it.
    const ignore = path.join(stateDir, '.gitignore');
    if (!fs.existsSync(ignore)) fs.writeFileSync(ignore, '*\n');
    let root: RootDatabase;
    try {
      root = open({ path: path.join(stateDir, 'store'), noSync: true, maxDbs: 16, mapSize: 64 * 1024 ** 3 });
    } catch (err) {
      throw new Error(`cannot open the cowfs store in ${stateDir}: ${(err as Error).message} (is it corrupt? move it aside to start afresh)`);
    }
    const db = <V, K extends import('lmdb').Key>(name: string, extra: object = {}) =>
      root.openDB<V, K>({ name, ...extra });
    const dbs: StoreDbs = {
      root,
      blobs: db<Buffer, string>('blobs', { encoding: 'binary' }),
      blobMeta: db<BlobRecord, string>('blobMeta'),
      agents: db('agents'),
      layers: db('layers'),
      commits: db('commits'),
      commitEntries: db('commitEntries'),
      events: db('events'),
      agentEvents: db('agentEvents'),
      dirty: db('dirty'),
      meta: db('meta'),
    };
    return new Store(stateDir, dbs);
  }

  /** Runs `fn` as one atomic write transaction. */
  txn<T>(fn: () => T): T {
    return this.dbs.root.transactionSync(fn);
  }

  /** What fsync(2) promises: everything committed so far is on the disk. */
  syncToDisk(): void {
    this.dataFd ??= fs.openSync(path.join(this.stateDir, 'store', 'data.mdb'), 'r');
    fs.fsyncSync(this.dataFd);
  }

  /** A scratch file's bytes and its name on the disk (fsync of a file being written). */
  syncScratch(fd: number): void {
    fs.fsyncSync(fd);
    const dir = fs.openSync(this.scratchDir, 'r');
    try {
      fs.fsyncSync(dir);
    } finally {
      fs.closeSync(dir);
    }
  }

  async close(): Promise<void> {
    this.scratch.close();
    if (this.dataFd !== undefined) fs.closeSync(this.dataFd);
    this.dataFd = undefined;
    await this.dbs.root.close();
  }
}
