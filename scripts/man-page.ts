/**
 * Prints muster(1), the man page, in roff: one section per command with its
 * usage, description, arguments and options, read from the program through
 * commander's Help, the source of every `--help` text, so the page never
 * drifts from the CLI. `npm run package` gzips it into the Debian package.
 *
 *   tsx scripts/man-page.ts > muster.1
 */
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { buildProgram } from '../src/cli/program.js';
import { systemClock } from '../src/core/clock.js';
import { systemRandom } from '../src/core/random.js';

/** Text as roff reads it literally: backslashes escaped, '-' as the ASCII minus (for flags one copies), other than ASCII as groff's \[uXXXX], no line starting with a control character. */
function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/[^\x00-\x7f]/gu, (c) => `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]`)
    .split('\n')
    .map((line) => (/^[.']/.test(line) ? `\\&${line}` : line))
    .join('\n');
}

const oneLine = (text: string): string => text.replace(/\s+/g, ' ').trim();

/** The man page of `program`. */
function manPage(program: Command): string {
  const help = program.createHelp();
  const version = program.version() ?? '';
  const lines: string[] = [
    `.TH MUSTER 1 "" "muster ${roff(version)}" "User Commands"`,
    // Flags and paths read badly hyphenated or stretched.
    '.nh',
    '.ad l',
    '.SH NAME',
    `muster \\- ${roff(oneLine(help.commandDescription(program)))}`,
    '.SH SYNOPSIS',
    '.B muster',
    '.I command',
    '[\\fIoptions\\fR] [\\fIarguments\\fR]',
    '.SH DESCRIPTION',
    `${roff(oneLine(help.commandDescription(program)))}`,
    '.PP',
    `Every command takes \\fB\\-h\\fR, \\fB\\-\\-help\\fR; \\fBmuster \\-\\-version\\fR prints the version. The same texts come with \\fB\\-\\-help\\fR.`,
    '.SH COMMANDS',
  ];
  const visit = (command: Command): void => {
    for (const sub of help.visibleCommands(command)) {
      // commander's own `help [command]`: said once above.
      if (sub.name() === 'help') continue;
      lines.push(`.SS ${roff(help.commandUsage(sub))}`);
      lines.push(roff(oneLine(help.commandDescription(sub))));
      const args = help.visibleArguments(sub);
      const options = help.visibleOptions(sub).filter((o) => o.long !== '--help');
      if (args.length > 0) {
        lines.push('.PP', 'Arguments:', '.RS');
        for (const arg of args) lines.push('.TP', `.I ${roff(arg.name())}`, roff(oneLine(help.argumentDescription(arg))));
        lines.push('.RE');
      }
      if (options.length > 0) {
        lines.push('.PP', 'Options:', '.RS');
        for (const option of options) lines.push('.TP', `.B ${roff(help.optionTerm(option))}`, roff(oneLine(help.optionDescription(option))));
        lines.push('.RE');
      }
      visit(sub);
    }
  };
  visit(program);
  lines.push(
    '.SH FILES',
    '.TP',
    '.I /var/lib/muster',
    "The data dir of root and of the systemd units (user muster, 0700): the node's key and certificates, and on a manager the cluster store with the CA key.",
    '.SH SEE ALSO',
    '\\fBmuster completion bash\\fR, \\fBsystemctl\\fR(1) with muster\\-manager.service and muster\\-node.service',
  );
  return `${lines.join('\n')}\n`;
}

const program = await buildProgram(
  {
    stdout: process.stdout,
    stderr: process.stderr,
    env: {},
    uid: 0,
    home: '/root',
    hostname: hostname(),
    clock: systemClock,
    random: systemRandom,
    waitForStop: () => new Promise(() => {}),
  },
  () => {},
);
process.stdout.write(manPage(program));
