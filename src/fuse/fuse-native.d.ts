/** The parts of fuse-native (a CommonJS package without types) the adapter uses. */
declare module 'fuse-native' {
  type Cb = (...args: any[]) => void;
  class Fuse {
    constructor(mnt: string, ops: Record<string, Cb>, opts?: Record<string, unknown>);
    mnt: string;
    ops: Record<string, Cb>;
    _thread: Buffer | null;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    _op_getattr(signal: Cb, path: string): void;
    static ENOENT: number;
  }
  export = Fuse;
}
