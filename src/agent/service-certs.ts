/**
 * Service certificates (issue 28): certificates the running node keeps for
 * its other services (dockerd, nginx). For each one the node makes a key
 * here, has a manager sign it with the node's own certificate, and writes
 * key, certificate and CA into the service's folder in the layout it reads;
 * then it runs the service's hook (a reload). Every renewal of the node
 * (its schedule, a renew-now push, a root rotation, a shorter expiry) renews
 * them too. A hook that fails or hangs is logged, counted and retried with
 * backoff; an issuance that fails is retried the same way.
 *
 * The definitions live in <data-dir>/services.json (0600, atomic), so they
 * survive restarts; the keys live only in the service folders.
 */
import { Value } from 'typebox/value';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { chmod, chown, lstat, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import Type from 'typebox';
import { randomBytes } from 'node:crypto';
import { syncDir, writeFileAtomic, writeNewFileSynced } from '../core/atomic-file.js';
import { backoffDelay, type BackoffPolicy } from '../core/backoff.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { MusterError, isMusterError } from '../core/errors.js';
import { readJsonFile } from '../core/json-file.js';
import type { Logger } from '../core/logger.js';
import type { Random } from '../core/random.js';
import type { ServiceCertificateRequest, ServiceCertificateResponse } from '../api/schemas.js';
import { createCsr } from '../pki/csr.js';
import { generateNodeKey } from '../pki/keys.js';

/** The file names each layout writes. */
export type CertLayout = 'pem' | 'docker';

import { SERVICE_RETRY } from './service-defaults.js';

export { DEFAULT_HOOK_TIMEOUT_MS, SERVICE_RETRY } from './service-defaults.js';

const Millis = Type.Integer({ minimum: 0 });

/** What `muster cert add` asked for: one service certificate. */
export const ServiceDefinition = Type.Object({
  name: Type.String(),
  /** The names asked for; empty: the node's own (hostname, advertise address). */
  sans: Type.Array(Type.String()),
  client: Type.Boolean(),
  /** The folder the files go to (absolute). */
  out: Type.String(),
  layout: Type.Union([Type.Literal('pem'), Type.Literal('docker')]),
  /** chown of the files (and of the folder when muster made it), numeric, with the text given. */
  owner: Type.Optional(Type.Object({ uid: Type.Integer(), gid: Type.Integer(), text: Type.String() })),
  /** Mode of the key file (0600 unless asked); the certificate and CA are 0644. */
  keyMode: Type.Integer({ minimum: 0, maximum: 0o777 }),
  /** The hook's argv, run without a shell (unless argv[0] is one). */
  exec: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
  execTimeoutMs: Type.Integer({ minimum: 1 }),
});
export type ServiceDefinition = Type.Static<typeof ServiceDefinition>;

/** What was last issued for a definition. */
const Issued = Type.Object({ serial: Type.String(), notAfter: Millis, issuedAt: Millis, sans: Type.Array(Type.String()) });

/** services.json */
const ServicesFile = Type.Object({
  schema: Type.Literal(1),
  services: Type.Array(Type.Object({ definition: ServiceDefinition, issued: Type.Optional(Issued) })),
});
type ServicesFile = Type.Static<typeof ServicesFile>;

/** One service certificate as `muster cert ls` shows it. */
export interface ServiceStatus {
  definition: ServiceDefinition;
  files: { ca: string; cert: string; key: string };
  serial?: string;
  notAfter?: string;
  sans?: string[];
  /** The last issuance failed (it is retried): its code and words. */
  issueError?: { code: string; message: string; at: string };
  hook: { runs: number; failures: number; lastError?: string; lastOkAt?: string; nextRetryAt?: string };
}

/** The three files of a service certificate, by layout. */
export function serviceFiles(definition: Pick<ServiceDefinition, 'name' | 'out' | 'layout' | 'client'>): { ca: string; cert: string; key: string } {
  const at = (file: string): string => join(definition.out, file);
  if (definition.layout === 'docker') {
    // Docker's TLS guide: the daemon's server-cert.pem/server-key.pem, a client's cert.pem/key.pem, both with ca.pem.
    return definition.client
      ? { ca: at('ca.pem'), cert: at('cert.pem'), key: at('key.pem') }
      : { ca: at('ca.pem'), cert: at('server-cert.pem'), key: at('server-key.pem') };
  }
  return { ca: at('ca.crt'), cert: at(`${definition.name}.crt`), key: at(`${definition.name}.key`) };
}

/**
 * Splits a hook command into argv the way a shell splits words, without
 * running one: whitespace separates, single quotes keep everything, double
 * quotes keep all but `\"` and `\\`, a backslash outside quotes escapes the
 * next character. No expansion of any kind. Give `sh -c '…'` for a shell.
 */
export function splitCommand(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote !== undefined) throw new MusterError('USAGE', `--exec has an unclosed ${quote} quote`);
  if (inWord) words.push(word);
  if (words.length === 0) throw new MusterError('USAGE', '--exec names no command');
  return words;
}

/** Reads `name:x:uid:gid:…` lines of /etc/passwd or /etc/group into name → [id, gid]. */
async function readIdFile(file: string): Promise<Map<string, [number, number]>> {
  const out = new Map<string, [number, number]>();
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [name, , id, gid] = line.split(':');
    if (name === undefined || id === undefined) continue;
    out.set(name, [Number(id), Number(gid ?? id)]);
  }
  return out;
}

/** `USER[:GROUP]` (names or numbers) as numeric IDs; a user alone brings their primary group. */
export async function resolveOwner(text: string, files = { passwd: '/etc/passwd', group: '/etc/group' }): Promise<{ uid: number; gid: number; text: string }> {
  const [user = '', group] = text.split(':');
  const hint = 'give --owner USER[:GROUP] with a user (and group) of this machine, by name or number';
  const users = await readIdFile(files.passwd);
  const numeric = (value: string): number | undefined => (/^\d+$/.test(value) ? Number(value) : undefined);
  const known = users.get(user);
  const uid = numeric(user) ?? known?.[0];
  if (uid === undefined) throw new MusterError('USAGE', `no user ${user.slice(0, 64)} on this machine`, { hint });
  let gid = known?.[1] ?? [...users.values()].find(([id]) => id === uid)?.[1] ?? uid;
  if (group !== undefined && group !== '') {
    const named = numeric(group) ?? (await readIdFile(files.group)).get(group)?.[0];
    if (named === undefined) throw new MusterError('USAGE', `no group ${group.slice(0, 64)} on this machine`, { hint });
    gid = named;
  }
  return { uid, gid, text };
}

/** What a service certificate manager is built from. */
export interface ServiceCertsParams {
  /** services.json */
  file: string;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** Asks a manager to sign, with the node's current certificate. */
  issue: (request: ServiceCertificateRequest) => Promise<ServiceCertificateResponse>;
  retry?: BackoffPolicy;
}

/** What a hook run ended with. */
export interface HookResult {
  ok: boolean;
  /** Why it failed: exit status, signal, timeout, or a command that could not start. */
  error?: string;
}

/** One service's state while the node runs. */
interface Entry {
  definition: ServiceDefinition;
  issued?: Type.Static<typeof Issued>;
  issueError?: { code: string; message: string; at: number };
  issueAttempts: number;
  issueTimer?: TimerHandle;
  hook: {
    runs: number;
    failures: number;
    attempts: number;
    lastError?: string;
    lastOkAt?: number;
    nextRetryAt?: number;
    timer?: TimerHandle;
    running: Promise<HookResult>;
  };
}

const codeOf = (error: unknown): string => (isMusterError(error) ? error.code : 'INTERNAL');

/** Whether a key and a certificate belong together (their public keys are the same). */
function matches(key: KeyObject, cert: X509Certificate): boolean {
  try {
    return cert.checkPrivateKey(key);
  } catch {
    return false;
  }
}

/** The service certificates of a running node. */
/** A chown the system refused: EPERM (the node does not run as root) is OWNER_NOT_PERMITTED, anything else a file error. */
export function ownerRefused(definition: ServiceDefinition, error: unknown): MusterError {
  const refused = `cannot give ${definition.out} to ${definition.owner?.text}`;
  if ((error as NodeJS.ErrnoException).code === 'EPERM')
    return new MusterError('OWNER_NOT_PERMITTED', `${refused}: this node does not run as root`, { cause: error });
  return new MusterError('FILE_ACCESS', `${refused}: ${(error as Error).message}`, { cause: error });
}

/** Gives `path` to the definition's --owner, when it names one (a refusal as ownerRefused words it). */
async function giveToOwner(definition: ServiceDefinition, path: string): Promise<void> {
  const { owner } = definition;
  if (owner === undefined) return;
  await chown(path, owner.uid, owner.gid).catch((error: unknown) => {
    throw ownerRefused(definition, error);
  });
}

export class ServiceCertificates {
  private readonly entries = new Map<string, Entry>();
  /** Issuances and file writes, one at a time (a renewal of all and an add never interleave their writes). */
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  private constructor(private readonly params: ServiceCertsParams) {}

  /** Loads the definitions in services.json (none when it is missing). */
  static async load(params: ServiceCertsParams): Promise<ServiceCertificates> {
    const certs = new ServiceCertificates(params);
    const file = await readJsonFile(
      params.file,
      (value) => Value.Check(ServicesFile, value),
      () => 'is not a list of service certificates this muster wrote',
    );
    for (const { definition, issued } of file?.services ?? []) certs.entries.set(definition.name, ServiceCertificates.entry(definition, issued));
    return certs;
  }

  private static entry(definition: ServiceDefinition, issued?: Entry['issued']): Entry {
    return {
      definition,
      ...(issued === undefined ? {} : { issued }),
      issueAttempts: 0,
      hook: { runs: 0, failures: 0, attempts: 0, running: Promise.resolve({ ok: true }) },
    };
  }

  private get policy(): BackoffPolicy {
    return this.params.retry ?? SERVICE_RETRY;
  }

  /** Hook failures since the node started, all services together (what `muster status` shows). */
  get hookFailures(): number {
    return [...this.entries.values()].reduce((sum, e) => sum + e.hook.failures, 0);
  }

  /** How many service certificates the node keeps. */
  get size(): number {
    return this.entries.size;
  }

  private async save(): Promise<void> {
    const file: ServicesFile = {
      schema: 1,
      services: [...this.entries.values()].map((e) => ({ definition: e.definition, ...(e.issued === undefined ? {} : { issued: e.issued }) })),
    };
    await writeFileAtomic(this.params.file, `${JSON.stringify(file, null, 2)}\n`, 0o600);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * At start: each service whose files are missing, do not match, or are
   * past two thirds of their lifetime is issued again (in the background;
   * failures are retried). The others wait for the node's next renewal.
   */
  start(): void {
    for (const entry of this.entries.values()) {
      void this.needsIssue(entry).then((needed) => {
        if (needed) this.renewOne(entry.definition.name, 'the files are missing, do not match, or are due');
      });
    }
  }

  private async needsIssue(entry: Entry): Promise<boolean> {
    const files = serviceFiles(entry.definition);
    try {
      const cert = new X509Certificate(await readFile(files.cert));
      const key = createPrivateKey(await readFile(files.key));
      const notBefore = Date.parse(cert.validFrom);
      const notAfter = Date.parse(cert.validTo);
      return !matches(key, cert) || this.params.clock.now() > notBefore + ((notAfter - notBefore) * 2) / 3;
    } catch {
      return true;
    }
  }

  /** Stops retrying; a hook that runs is left to finish (its timeout bounds it). Idempotent. */
  stop(): void {
    this.stopped = true;
    for (const entry of this.entries.values()) {
      entry.issueTimer?.cancel();
      entry.hook.timer?.cancel();
    }
  }

  /**
   * `muster cert add`: issues, writes and keeps the definition, then runs
   * the hook once and answers with how it went. A refusal by the managers
   * (names not allowed) keeps nothing.
   */
  async add(definition: ServiceDefinition): Promise<ServiceStatus> {
    // Two certificates may share a folder's CA file (the same bundle), never a certificate or key file.
    const mine = serviceFiles(definition);
    const clash = [...this.entries.values()].find((e) => {
      const theirs = serviceFiles(e.definition);
      return e.definition.name !== definition.name && [theirs.cert, theirs.key].some((f) => f === mine.cert || f === mine.key);
    });
    if (clash !== undefined)
      throw new MusterError('FILE_EXISTS', `service certificate ${clash.definition.name} writes the same files in ${definition.out}`, {
        hint: 'pick another --out or --layout',
      });
    const previous = this.entries.get(definition.name);
    const entry = ServiceCertificates.entry(definition, previous?.issued);
    await this.serial(async () => {
      await this.issueAndWrite(entry);
      previous?.issueTimer?.cancel();
      previous?.hook.timer?.cancel();
      this.entries.set(definition.name, entry);
      await this.save();
    });
    await this.runHook(entry);
    return this.statusOf(entry);
  }

  /** `muster cert rm`: stops renewing it and forgets it; the files stay where they are. */
  async remove(name: string): Promise<ServiceStatus> {
    return this.serial(async () => {
      const entry = this.entries.get(name);
      if (entry === undefined) throw new MusterError('SERVICE_CERT_NOT_FOUND', `no service certificate ${name.slice(0, 64)} on this node`);
      entry.issueTimer?.cancel();
      entry.hook.timer?.cancel();
      this.entries.delete(name);
      await this.save();
      this.params.logger.info(
        { service: name },
        `service certificate ${name} removed; it is no longer renewed (its files were left in ${entry.definition.out})`,
      );
      return this.statusOf(entry);
    });
  }

  /** `muster cert ls` */
  list(): ServiceStatus[] {
    return [...this.entries.values()].sort((a, b) => a.definition.name.localeCompare(b.definition.name)).map((e) => this.statusOf(e));
  }

  /** After the node renewed its own certificate: every service certificate is renewed with it. */
  renewAll(reason: string): void {
    for (const name of this.entries.keys()) this.renewOne(name, reason);
  }

  /** Renews one service in the background; a failure is logged and retried with backoff. */
  private renewOne(name: string, reason: string): void {
    void this.serial(async () => {
      const entry = this.entries.get(name);
      if (entry === undefined || this.stopped) return false;
      entry.issueTimer?.cancel();
      try {
        await this.issueAndWrite(entry);
      } catch (error) {
        entry.issueAttempts++;
        entry.issueError = { code: codeOf(error), message: error instanceof Error ? error.message : String(error), at: this.params.clock.now() };
        const delay = backoffDelay(this.policy, entry.issueAttempts, this.params.random);
        this.params.logger.warn(
          { service: name, code: entry.issueError.code, err: entry.issueError.message, retryInMs: delay },
          `service certificate ${name} could not be renewed; retrying`,
        );
        if (!this.stopped) entry.issueTimer = this.params.clock.setTimer(delay, () => this.renewOne(name, 'retry'));
        return false;
      }
      await this.save();
      this.params.logger.info({ service: name, reason, serial: entry.issued?.serial }, `service certificate ${name} renewed`);
      return true;
    }).then((written) => {
      const entry = this.entries.get(name);
      if (written === true && entry !== undefined) void this.runHook(entry);
    });
  }

  /** A fresh key, the managers' signature, the files: what every issuance does. */
  private async issueAndWrite(entry: Entry): Promise<void> {
    const { definition } = entry;
    const key = await generateNodeKey(); // a fresh key every time, as for the node's own
    const csr = createCsr({ privateKey: key.privateKey, subject: { commonName: definition.name } });
    const response = await this.params.issue({ name: definition.name, csr, sans: definition.sans, ...(definition.client ? { client: true } : {}) });
    const cert = new X509Certificate(response.certificate);
    if (!matches(key.privateKey, cert)) throw new MusterError('ISSUED_CERT_INVALID', 'the service certificate returned does not hold the key this node made');
    // A daemon's folder (Docker's layout) trusts the admin anchor, so that dockerd --tlscacert ca.pem admits API users only; elsewhere the cluster's roots.
    const daemon = definition.layout === 'docker' && !definition.client;
    await this.writeFiles(definition, {
      keyPem: key.privateKeyPem,
      certPem: response.certificate,
      caPem: daemon && response.adminAnchor !== undefined ? response.adminAnchor : response.rootCA,
    });
    entry.issued = { serial: response.serial, notAfter: Date.parse(response.notAfter), issuedAt: this.params.clock.now(), sans: response.sans };
    delete entry.issueError;
    entry.issueAttempts = 0;
  }

  /**
   * Writes the three files, each atomically (temporary file with its mode
   * and owner, fsync, rename, fsync of the folder): a service never reads
   * half a file. The CA first and the key last, one right after the other.
   */
  private async writeFiles(definition: ServiceDefinition, pems: { keyPem: string; certPem: string; caPem: string }): Promise<void> {
    const files = serviceFiles(definition);
    const made = await lstat(definition.out).then(
      (info) => {
        if (!info.isDirectory()) throw new MusterError('FILE_ACCESS', `${definition.out} is not a folder`);
        return false;
      },
      async () => {
        await mkdir(definition.out, { recursive: true, mode: 0o700 });
        return true;
      },
    );
    if (made) {
      await chmod(definition.out, definition.owner === undefined ? 0o700 : 0o750);
      await giveToOwner(definition, definition.out);
    }
    const plan: [string, string, number][] = [
      [files.ca, pems.caPem, 0o644],
      [files.cert, pems.certPem, 0o644],
      [files.key, pems.keyPem, definition.keyMode],
    ];
    const temps: [string, string][] = [];
    try {
      for (const [path, data, mode] of plan) {
        const temp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
        await writeNewFileSynced(temp, data, mode);
        temps.push([temp, path]);
        await giveToOwner(definition, temp);
      }
      for (const [temp, path] of temps) await rename(temp, path);
    } catch (error) {
      await Promise.all(temps.map(([temp]) => rm(temp, { force: true })));
      throw isMusterError(error)
        ? error
        : new MusterError('FILE_ACCESS', `cannot write the service certificate into ${definition.out}: ${(error as Error).message}`, { cause: error });
    }
    await syncDir(definition.out);
  }

  /** Runs the hook after a write (after the run under way, if one is); a failure is retried with backoff until one succeeds. */
  private runHook(entry: Entry): Promise<HookResult> {
    const { hook, definition } = entry;
    if (definition.exec === undefined) return Promise.resolve({ ok: true });
    hook.timer?.cancel();
    delete hook.nextRetryAt;
    hook.running = hook.running.then(() => this.execHook(entry));
    return hook.running;
  }

  private async execHook(entry: Entry): Promise<HookResult> {
    const { hook, definition } = entry;
    const argv = definition.exec;
    if (argv === undefined || this.stopped || this.entries.get(definition.name) !== entry) return { ok: true };
    hook.runs++;
    const result = await new Promise<HookResult>((resolve) => {
      execFile(
        argv[0]!,
        argv.slice(1),
        { timeout: definition.execTimeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024, cwd: definition.out },
        (error, _stdout, stderr) => {
          if (error === null) return resolve({ ok: true });
          const failure = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: string | number | null };
          const tail = stderr.trim().split('\n').at(-1)?.slice(0, 200) ?? '';
          if (failure.killed === true && failure.signal === 'SIGKILL')
            return resolve({ ok: false, error: `timed out after ${definition.execTimeoutMs} ms (killed)` });
          if (typeof failure.code === 'string') return resolve({ ok: false, error: `could not start ${argv[0]}: ${failure.code}` });
          const how = failure.signal ? `was killed by ${failure.signal}` : `exited ${String(failure.code)}`;
          return resolve({ ok: false, error: `${how}${tail === '' ? '' : `: ${tail}`}` });
        },
      );
    });
    if (result.ok) {
      hook.attempts = 0;
      hook.lastOkAt = this.params.clock.now();
      delete hook.lastError;
      this.params.logger.info({ service: definition.name }, `the hook of service certificate ${definition.name} ran`);
      return result;
    }
    hook.failures++;
    hook.attempts++;
    hook.lastError = result.error;
    const delay = backoffDelay(this.policy, hook.attempts, this.params.random);
    hook.nextRetryAt = this.params.clock.now() + delay;
    this.params.logger.warn(
      { service: definition.name, err: result.error, failures: hook.failures, retryInMs: delay },
      `the hook of service certificate ${definition.name} failed (${result.error}); retrying`,
    );
    if (!this.stopped) hook.timer = this.params.clock.setTimer(delay, () => void this.runHook(entry));
    return result;
  }

  private statusOf(entry: Entry): ServiceStatus {
    const { hook, issued, issueError } = entry;
    const iso = (ms: number): string => new Date(ms).toISOString();
    return {
      definition: entry.definition,
      files: serviceFiles(entry.definition),
      ...(issued === undefined ? {} : { serial: issued.serial, notAfter: iso(issued.notAfter), sans: issued.sans }),
      ...(issueError === undefined ? {} : { issueError: { code: issueError.code, message: issueError.message, at: iso(issueError.at) } }),
      hook: {
        runs: hook.runs,
        failures: hook.failures,
        ...(hook.lastError === undefined ? {} : { lastError: hook.lastError }),
        ...(hook.lastOkAt === undefined ? {} : { lastOkAt: iso(hook.lastOkAt) }),
        ...(hook.nextRetryAt === undefined ? {} : { nextRetryAt: iso(hook.nextRetryAt) }),
      },
    };
  }
}
