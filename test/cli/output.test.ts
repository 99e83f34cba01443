import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MusterError } from '../../src/core/errors.js';
import { formatTable, printError, relativeTime } from '../../src/cli/output.js';
import { readEnv } from '../../src/cli/settings.js';

class Sink extends Writable {
  text = '';
  constructor(readonly isTTY: boolean) {
    super();
  }
  override _write(chunk: Buffer, _e: string, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

describe('output', () => {
  it('uses colour only on a TTY, and never with NO_COLOR or TERM=dumb', () => {
    const colour = (stream: { isTTY?: boolean }, env: Record<string, string>): boolean => readEnv({ env }).colour(stream);
    expect(colour({ isTTY: true }, {})).toBe(true);
    expect(colour({ isTTY: false }, {})).toBe(false);
    expect(colour({}, {})).toBe(false);
    expect(colour({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(colour({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
  });

  it('prints error: and hint: lines, coloured on a TTY only, and returns the exit code', () => {
    const plain = new Sink(false);
    expect(printError({ stdout: new Sink(false), stderr: plain }, new MusterError('CERT_EXPIRY_TOO_SHORT'), false)).toBe(2);
    expect(plain.text).toBe('error: certificate expiry is below the minimum of 5m\nhint: use --cert-expiry 5m or longer\n');
    const tty = new Sink(true);
    expect(printError({ stdout: new Sink(true), stderr: tty }, new MusterError('NODE_REMOVED'), true)).toBe(1);
    expect(tty.text).toBe(
      "\u001b[31merror:\u001b[0m this node has been removed from the cluster\n\u001b[33mhint:\u001b[0m clear it with 'muster leave', then join again; 'muster join --force --token-file FILE ADDR' does both\n",
    );
    const other = new Sink(false);
    expect(printError({ stdout: new Sink(false), stderr: other }, new Error('boom'), false)).toBe(1);
    expect(other.text).toBe('error: boom\n');
  });

  it('turns what the operating system said into error: and hint: lines', () => {
    const sink = new Sink(false);
    const eacces = Object.assign(new Error("EACCES: permission denied, open '/var/lib/muster/node.json'"), {
      code: 'EACCES',
      path: '/var/lib/muster/node.json',
    });
    expect(printError({ stdout: new Sink(false), stderr: sink }, eacces, false)).toBe(1);
    expect(sink.text).toBe(
      'error: permission denied: /var/lib/muster/node.json\nhint: run muster as the user that owns the data dir (root for /var/lib/muster), or choose another --data-dir\n',
    );
    for (const code of ['ENOTDIR', 'ENOSPC', 'EROFS', 'ENOENT']) {
      const out = new Sink(false);
      printError({ stdout: new Sink(false), stderr: out }, Object.assign(new Error(code), { code, path: '/d/x' }), false);
      expect(out.text).toMatch(/^error: .*\/d\/x.*\nhint: /);
    }
    const dns = new Sink(false);
    expect(
      printError(
        { stdout: new Sink(false), stderr: dns },
        Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.invalid'), { code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: 'nowhere.invalid' }),
        false,
      ),
    ).toBe(2);
    expect(dns.text).toBe('error: the host name nowhere.invalid cannot be resolved\nhint: check the address, or use an IP address\n');
  });

  it('aligns table columns three spaces apart, without trailing spaces', () => {
    expect(
      formatTable(
        ['ID', 'ROLE'],
        [
          ['a', 'manager'],
          ['longer-id', 'worker'],
        ],
      ),
    ).toBe('ID          ROLE\na           manager\nlonger-id   worker\n');
  });

  it('writes relative times', () => {
    expect(relativeTime(90 * 86_400_000, 0)).toBe('in 90 days');
    expect(relativeTime(0, 3_000)).toBe('3 seconds ago');
    expect(relativeTime(0, 1_000)).toBe('1 second ago');
    expect(relativeTime(3_600_000, 0)).toBe('in 1 hour');
  });
});
