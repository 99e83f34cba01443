/** Running the built muster-ca as a child process, and reading what it wrote with muster's own DER walker. */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DerNode, TAG } from '../../src/pki/der.js';

/** The built executable (vitest's global setup builds dist/ first). */
export const MUSTER_CA = fileURLToPath(new URL('../../dist/ca-tool/main.js', import.meta.url));

/** What one run of muster-ca did. */
export interface CaRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `muster-ca ARGV` in `cwd` and waits for it to exit. */
export function runMusterCa(argv: string[], cwd: string): Promise<CaRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MUSTER_CA, ...argv], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** One extension of a certificate: whether it is critical, and its value's DER. */
export interface ExtensionFacts {
  critical: boolean;
  value: DerNode;
}

/** The extensions of a PEM certificate by OID, read with src/pki/der.ts (RFC 5280 §4.1: the [3] field of the TBSCertificate). */
export function extensionsOf(pem: string): Map<string, ExtensionFacts> {
  const der = new X509Certificate(pem).raw;
  const fail = (why: string): Error => new Error(`certificate: ${why}`);
  const tbs = DerNode.parse(der, fail).child(0, TAG.SEQUENCE);
  const wrapped = tbs.children().find((c) => c.tag === 0xa3);
  const out = new Map<string, ExtensionFacts>();
  for (const ext of wrapped?.inner().children() ?? []) {
    const parts = ext.children();
    const critical = parts.length === 3 && parts[1]!.tag === 0x01 && parts[1]!.content[0] === 0xff;
    out.set(parts[0]!.oid(), { critical, value: parts[parts.length - 1]!.inner() });
  }
  return out;
}

/** The text of a file. */
export const readText = (path: string): string => readFileSync(path, 'utf8');
