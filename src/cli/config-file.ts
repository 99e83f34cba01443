/**
 * The config file of `muster run` (`/etc/muster/config.yaml`, `--config`,
 * MUSTER_CONFIG): the settings a node starts with, so that systemd's one
 * `muster run` sets a node up and runs it. Keys are the long flags' names;
 * `init:` founds a cluster when the data dir is empty, `join:` joins one
 * with a token file. Flags and MUSTER_* variables win over the file. An
 * unknown key is an error (a typo must not silently mean a default).
 */
import { readFile } from 'node:fs/promises';
import Type from 'typebox';
import { Compile } from 'typebox/compile';
import { parse } from 'yaml';
import { MusterError } from '../core/errors.js';

/** Where `muster run` looks when no --config or MUSTER_CONFIG names a file (used only if it exists). */
export const DEFAULT_CONFIG_FILE = '/etc/muster/config.yaml';

const Text = Type.String({ minLength: 1, maxLength: 4096 });

/** `init:`: found a cluster on an empty data dir (init's flags). */
const InitSection = Type.Object(
  {
    store: Type.Optional(Text),
    'cert-expiry': Type.Optional(Text),
    autolock: Type.Optional(Type.Boolean()),
    'ca-cert': Type.Optional(Text),
    'ca-key': Type.Optional(Text),
    'external-ca': Type.Optional(Type.Array(Text)),
    'etcd-client-addr': Type.Optional(Text),
    'etcd-peer-addr': Type.Optional(Text),
    'etcd-binary': Type.Optional(Text),
  },
  { additionalProperties: false },
);

/** `join:`: join a cluster with the token in a file (join's flags). */
const JoinSection = Type.Object(
  {
    'token-file': Text,
    manager: Text,
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
    'etcd-client-addr': Type.Optional(Text),
    'etcd-peer-addr': Type.Optional(Text),
    'etcd-binary': Type.Optional(Text),
  },
  { additionalProperties: false },
);

/** The whole file. */
export const ConfigFile = Type.Object(
  {
    'data-dir': Type.Optional(Text),
    'listen-addr': Type.Optional(Text),
    'advertise-addr': Type.Optional(Text),
    'log-level': Type.Optional(Type.Union([Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')])),
    'log-format': Type.Optional(Type.Union([Type.Literal('text'), Type.Literal('json')])),
    'audit-log': Type.Optional(Text),
    'metrics-addr': Type.Optional(Text),
    'unlock-key-file': Type.Optional(Text),
    init: Type.Optional(InitSection),
    join: Type.Optional(JoinSection),
  },
  { additionalProperties: false },
);
export type ConfigFile = Type.Static<typeof ConfigFile>;

const check = Compile(ConfigFile);

/** Reads and checks a config file; USAGE naming the file and the first problem. `optional`: a missing file is no config. */
export async function readConfigFile(path: string, optional: boolean): Promise<ConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (optional && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MusterError('USAGE', `cannot read the config file ${path}`, { hint: 'check --config or MUSTER_CONFIG, and that the muster user can read it' });
  }
  let value: unknown;
  try {
    value = parse(text) ?? {};
  } catch (cause) {
    throw new MusterError('USAGE', `${path} is not YAML: ${cause instanceof Error ? cause.message.split('\n')[0] : String(cause)}`, { cause });
  }
  if (!check.Check(value)) {
    const first = [...check.Errors(value)][0];
    const where = first?.instancePath === undefined || first.instancePath === '' ? 'the file' : first.instancePath.replace(/^\//, '').replace(/\//g, '.');
    throw new MusterError('USAGE', `${path}: ${where}: ${first?.message ?? 'not a muster config'}`, {
      hint: 'keys are the long flags of init, join and run (data-dir, listen-addr, …), with init: or join: sections; see the README',
    });
  }
  if (value.init !== undefined && value.join !== undefined)
    throw new MusterError('USAGE', `${path} has both init: and join:`, { hint: 'a node founds a cluster or joins one: keep one of the two' });
  return value;
}
