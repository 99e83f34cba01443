/** Real `curl` against the manager (asynchronous: the manager may run in this very process). */
import { spawn } from 'node:child_process';

/** What curl saw. */
export interface CurlResult {
  status: number;
  body: string;
  json: () => Record<string, unknown>;
  stderr: string;
  exitCode: number;
}

/** Runs curl with `args` plus a status-code trailer; never throws. */
export function curl(args: string[], input?: string): Promise<CurlResult> {
  return new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code}', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
    child.on('close', (code) => {
      const cut = out.lastIndexOf('\n');
      const body = out.slice(0, cut);
      resolve({
        status: Number(out.slice(cut + 1)),
        body,
        json: () => JSON.parse(body) as Record<string, unknown>,
        stderr: err,
        exitCode: code ?? -1,
      });
    });
    child.stdin.end(input ?? '');
  });
}
