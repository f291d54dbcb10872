import type { Command } from 'commander';
import { Client } from './client.js';
import { locate, type Target } from './locate.js';
import { CliError, type OutputOptions } from './output.js';

export interface GlobalOptions extends OutputOptions {
  workspace?: string;
  stateDir?: string;
}

export function globals(cmd: Command): GlobalOptions {
  const opts = cmd.optsWithGlobals() as Omit<GlobalOptions, 'workspace'> & { workspace?: string | true };
  if (opts.workspace === true) throw new CliError('--workspace needs a directory: cowfs --workspace DIR ' + cmd.name() + ' …');
  return opts as GlobalOptions;
}

/** Locates the daemon, connects, runs `fn`, and always closes the connection. */
export async function withDaemon<T>(cmd: Command, fn: (client: Client, target: Target, opts: GlobalOptions) => Promise<T>): Promise<T> {
  const opts = globals(cmd);
  const target = locate(opts);
  const client = await Client.connect(target);
  try {
    return await fn(client, target, opts);
  } finally {
    client.close();
  }
}

/** AGENT as given, else the agent of the mount or sandbox the command runs in. */
export function agentArg(given: string | undefined, target: Target): string {
  const agent = given ?? target.agent;
  if (!agent) throw new CliError('no AGENT given, and not inside an agent\'s mount');
  return agent;
}
