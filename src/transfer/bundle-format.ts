import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';

/**
 * The bundle file: a magic line and a format version, then frames
 * `[type: 1 byte][length: 8 bytes LE][payload]` — one manifest (JSON), one
 * frame per blob (`[id length: 2 bytes][id][bytes]`), and an end frame
 * holding the SHA-256 of every byte before it. A reader checks the
 * checksum before anything is kept, so a cut or a flipped byte anywhere is
 * refused; each blob is also checked against its id.
 */
export const MAGIC = Buffer.from('cowfs-bundle\n');
export const FORMAT_VERSION = 1;
export const FRAME_MANIFEST = 0x4d; // 'M'
export const FRAME_BLOB = 0x42; // 'B'
export const FRAME_END = 0x5a; // 'Z'
const FRAME_HEADER = 9;
const CHUNK = 1024 * 1024;

/** A bundle that cannot be read: corrupt, cut short, or of another format. */
export class BundleError extends Error {
  override name = 'BundleError';
}

/** Writes a bundle sequentially, hashing every byte for the end frame. */
export class BundleWriter {
  private readonly sha: Hash = createHash('sha256');
  private readonly fd: number;
  private readonly pending = Buffer.allocUnsafe(CHUNK);
  private pendingLength = 0;
  bytes = 0;

  constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'w', 0o600);
    const version = Buffer.alloc(4);
    version.writeUInt32LE(FORMAT_VERSION);
    this.write(MAGIC);
    this.write(version);
  }

  frame(type: number, payload: Buffer): void {
    this.frameHeader(type, payload.length);
    this.write(payload);
  }

  /** A blob frame whose bytes come from a file, streamed in chunks. */
  blobFromFile(id: string, file: string, size: number): void {
    const idBytes = Buffer.from(id);
    this.frameHeader(FRAME_BLOB, 2 + idBytes.length + size);
    this.write(blobIdPrefix(idBytes));
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      let left = size;
      while (left > 0) {
        const n = fs.readSync(fd, buf, 0, Math.min(CHUNK, left), null);
        if (n === 0) throw new Error(`blob file ${file} is shorter than its id says`);
        this.write(buf.subarray(0, n));
        left -= n;
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  blob(id: string, bytes: Buffer): void {
    const idBytes = Buffer.from(id);
    this.frameHeader(FRAME_BLOB, 2 + idBytes.length + bytes.length);
    this.write(blobIdPrefix(idBytes));
    this.write(bytes);
  }

  /** The end frame, then fsync: a bundle that exists whole is on the disk. */
  finish(): void {
    this.flush();
    const digest = this.sha.digest();
    const header = Buffer.alloc(FRAME_HEADER);
    header[0] = FRAME_END;
    header.writeBigUInt64LE(BigInt(digest.length), 1);
    writeAll(this.fd, Buffer.concat([header, digest]));
    this.bytes += header.length + digest.length;
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
  }

  abort(): void {
    fs.closeSync(this.fd);
    fs.rmSync(this.file, { force: true });
  }

  private frameHeader(type: number, length: number): void {
    const header = Buffer.alloc(FRAME_HEADER);
    header[0] = type;
    header.writeBigUInt64LE(BigInt(length), 1);
    this.write(header);
  }

  /** Small writes are gathered into one buffer: a bundle of many small blobs costs few system calls. */
  private write(buf: Buffer): void {
    this.sha.update(buf);
    this.bytes += buf.length;
    if (this.pendingLength + buf.length > CHUNK) this.flush();
    if (buf.length >= CHUNK) writeAll(this.fd, buf);
    else {
      buf.copy(this.pending, this.pendingLength);
      this.pendingLength += buf.length;
    }
  }

  private flush(): void {
    writeAll(this.fd, this.pending.subarray(0, this.pendingLength));
    this.pendingLength = 0;
  }
}

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length;) off += fs.writeSync(fd, buf, off, buf.length - off);
}

function blobIdPrefix(idBytes: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16LE(idBytes.length);
  return Buffer.concat([len, idBytes]);
}

/** One frame as the reader hands it out; a blob's bytes are read by the caller in chunks. */
export type Frame =
  | { type: 'manifest'; json: unknown }
  | { type: 'blob'; id: string; size: number }
  | { type: 'end' };

/** Reads a bundle sequentially, hashing what it reads; `end` is only returned when the checksum matches. */
export class BundleReader {
  private readonly sha: Hash = createHash('sha256');
  private readonly fd: number;
  readonly size: number;
  /** Bytes consumed so far. */
  pos = 0;
  private readonly window = Buffer.allocUnsafe(CHUNK);
  private windowStart = 0;
  private windowLength = 0;
  private blobLeft = 0;

  constructor(readonly file: string) {
    try {
      this.fd = fs.openSync(file, 'r');
    } catch (err) {
      throw new BundleError(`cannot read the bundle ${file}: ${(err as Error).message}`);
    }
    this.size = fs.fstatSync(this.fd).size;
    const magic = this.readExact(Math.min(MAGIC.length, this.size), 'the header');
    if (!magic.equals(MAGIC)) {
      throw new BundleError(MAGIC.subarray(0, magic.length).equals(magic) ? this.cut().message : `${file} is not a cowfs bundle`);
    }
    const head = Buffer.concat([magic, this.readExact(4, 'the header')]);
    const version = head.readUInt32LE(MAGIC.length);
    if (version !== FORMAT_VERSION) {
      throw new BundleError(`${file} is a bundle of format ${version}; this cowfs reads format ${FORMAT_VERSION}`);
    }
  }

  next(): Frame {
    if (this.blobLeft > 0) throw new Error('the previous blob was not read to its end');
    const header = this.peekHeader();
    const type = header[0];
    const length = Number(header.readBigUInt64LE(1));
    if (length > this.size - this.pos) throw this.cut();
    if (type === FRAME_END) {
      const expected = this.sha.digest();
      const got = this.readRaw(length);
      if (length !== expected.length || !got.equals(expected)) {
        throw new BundleError(`${this.file} is corrupt: its checksum does not match its content`);
      }
      if (this.pos !== this.size) throw new BundleError(`${this.file} has ${this.size - this.pos} stray bytes after its end`);
      return { type: 'end' };
    }
    this.sha.update(header);
    if (type === FRAME_MANIFEST) {
      const text = this.readExact(length, 'the manifest').toString('utf8');
      try {
        return { type: 'manifest', json: JSON.parse(text) };
      } catch {
        throw new BundleError(`${this.file} is corrupt: its manifest is not valid JSON`);
      }
    }
    if (type === FRAME_BLOB) {
      const idLen = this.readExact(2, 'a blob id').readUInt16LE(0);
      if (idLen > length - 2) throw new BundleError(`${this.file} is corrupt at byte ${this.pos}: a blob frame is malformed`);
      const id = this.readExact(idLen, 'a blob id').toString('utf8');
      this.blobLeft = length - 2 - idLen;
      return { type: 'blob', id, size: this.blobLeft };
    }
    throw new BundleError(`${this.file} is corrupt at byte ${this.pos}: unknown frame type ${type}`);
  }

  /** The next chunk of the current blob's bytes (empty when all were read). */
  blobChunk(max = CHUNK): Buffer {
    const n = Math.min(max, this.blobLeft);
    if (n === 0) return Buffer.alloc(0);
    const buf = this.readExact(n, 'a blob');
    this.blobLeft -= n;
    return buf;
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  private peekHeader(): Buffer {
    if (this.pos + FRAME_HEADER > this.size) throw this.cut();
    return this.readRaw(FRAME_HEADER);
  }

  private readExact(n: number, what: string): Buffer {
    if (this.pos + n > this.size) throw new BundleError(`${this.file} is cut short in ${what} (${this.size} bytes)`);
    const buf = this.readRaw(n);
    this.sha.update(buf);
    return buf;
  }

  /** The next `n` bytes (a copy the caller may keep), read through a window of the file: few system calls. */
  private readRaw(n: number): Buffer {
    if (n > this.size - this.pos) throw this.cut();
    const at = this.pos - this.windowStart;
    if (at < 0 || at + n > this.windowLength) {
      if (n >= CHUNK) {
        const buf = Buffer.allocUnsafe(n);
        this.readAt(buf, n, this.pos);
        this.pos += n;
        return buf;
      }
      this.windowStart = this.pos;
      this.windowLength = Math.min(CHUNK, this.size - this.pos);
      this.readAt(this.window, this.windowLength, this.pos);
      return this.readRaw(n);
    }
    this.pos += n;
    return Buffer.from(this.window.subarray(at, at + n));
  }

  private readAt(buf: Buffer, n: number, position: number): void {
    for (let off = 0; off < n;) {
      const got = fs.readSync(this.fd, buf, off, n - off, position + off);
      if (got === 0) throw this.cut();
      off += got;
    }
  }

  private cut(): BundleError {
    return new BundleError(`${this.file} is cut short (${this.size} bytes, it ends inside a frame or before its end frame)`);
  }
}
