/**
 * `muster completion bash|zsh`: prints a shell completion script. Its tables
 * (each command's subcommands, options, which options take a value and what
 * kind) are read from this very program through commander's Help, the same
 * source as `--help`, so the completion never drifts from the CLI.
 */
import { Argument, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { act, type Done } from '../options.js';

const SHELLS = ['bash', 'zsh'] as const;
type Shell = (typeof SHELLS)[number];

/** What completing after one command needs; `path` is its words after `muster` ('' for muster itself). */
interface CommandSpec {
  path: string;
  subcommands: { name: string; description: string }[];
  flags: { flag: string; description: string }[];
  /** Flags that take a value (the next word, or after '='). */
  valued: string[];
  fileValued: string[];
  dirValued: string[];
  /** Flags whose value is one of a fixed list. */
  choices: { flag: string; values: string[] }[];
  /** Fixed values of the command's positional arguments. */
  argumentChoices: string[];
}

/** Every command of the program, depth first, as completion specs. */
function collectSpecs(program: Command): CommandSpec[] {
  const help = program.createHelp();
  const specs: CommandSpec[] = [];
  const visit = (command: Command, path: string, siblings: readonly string[]): void => {
    const subcommands = help.visibleCommands(command);
    const spec: CommandSpec = {
      path,
      subcommands: subcommands.flatMap((sub) =>
        [sub.name(), ...sub.aliases()].map((name) => ({ name, description: oneLine(help.subcommandDescription(sub)) })),
      ),
      flags: [],
      valued: [],
      fileValued: [],
      dirValued: [],
      choices: [],
      // `muster help COMMAND`, `muster node help COMMAND`: commander's own help command takes its siblings' names.
      argumentChoices:
        command.name() === 'help' && path !== ''
          ? siblings.filter((name) => name !== 'help')
          : help.visibleArguments(command).flatMap((argument: Argument) => argument.argChoices ?? []),
    };
    for (const option of help.visibleOptions(command)) {
      const flags = [option.short, option.long].filter((f): f is string => f !== undefined);
      spec.flags.push(...flags.map((flag) => ({ flag, description: oneLine(option.description) })));
      if (!option.required && !option.optional) continue;
      spec.valued.push(...flags);
      // The placeholder names the kind of value: '--data-dir <dir>', '--tls-cert <file>'.
      const placeholder = /[<[]([^>\]]*)[>\]]/.exec(option.flags)?.[1];
      // A placeholder that lists the values ('--autolock <true|false>') is as good as choices.
      const values = option.argChoices ?? (placeholder !== undefined && /^[\w-]+(\|[\w-]+)+$/.test(placeholder) ? placeholder.split('|') : undefined);
      if (values !== undefined) spec.choices.push(...flags.map((flag) => ({ flag, values })));
      else if (placeholder === 'file') spec.fileValued.push(...flags);
      else if (placeholder === 'dir') spec.dirValued.push(...flags);
    }
    specs.push(spec);
    const names = subcommands.map((sub) => sub.name());
    for (const sub of subcommands) visit(sub, path === '' ? sub.name() : `${path} ${sub.name()}`, names);
  };
  visit(program, '', []);
  return specs;
}

const oneLine = (text: string): string => text.replace(/\s+/g, ' ').trim();

/** A word as a single-quoted shell string (bash and zsh read it alike). */
const quote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;

/** The bash script: `_muster` reads COMP_WORDS, walks down the commands, and offers subcommands, flags or a flag's values. */
function bashScript(specs: readonly CommandSpec[]): string {
  const spec = specs
    .map((s) => {
      const words = (list: readonly string[]): string => quote(list.join(' '));
      return `    ${quote(s.path)}) subs=${words([...s.subcommands.map((c) => c.name)])} flags=${words(s.flags.map((f) => f.flag))} valued=${words(s.valued)} filevalued=${words(s.fileValued)} dirvalued=${words(s.dirValued)} argvals=${words(s.argumentChoices)} ;;`;
    })
    .join('\n');
  const choices = specs.flatMap((s) => s.choices.map((c) => `    ${quote(`${s.path} ${c.flag}`)}) choices=${quote(c.values.join(' '))} ;;`)).join('\n');
  return `# bash completion for muster, printed by 'muster completion bash' from the program's own commands.
# Load it with: source <(muster completion bash)
# or install it as /usr/share/bash-completion/completions/muster (the Debian package does).

_muster_spec() {
  case $1 in
${spec}
    *) subs='' flags='' valued='' filevalued='' dirvalued='' argvals='' ;;
  esac
}

_muster_choices() {
  case $1 in
${choices}
    *) choices='' ;;
  esac
}

_muster() {
  local cur=\${COMP_WORDS[COMP_CWORD]} cmdpath='' word='' opt='' i skip=0
  local subs flags valued filevalued dirvalued argvals choices
  # bash splits '--opt=value' into '--opt' '=' 'value'; right after the '=', the word is '=' itself.
  [[ $cur == = ]] && cur=''
  _muster_spec ''
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=\${COMP_WORDS[i]}
    if ((skip > 0)); then skip=$((skip - 1)); continue; fi
    if [[ $word == -* ]]; then
      if [[ " $valued " == *" $word "* ]]; then
        opt=$word
        if [[ \${COMP_WORDS[i + 1]} == = ]]; then skip=2; else skip=1; fi
      fi
      continue
    fi
    if [[ " $subs " == *" $word "* ]]; then
      cmdpath=\${cmdpath:+$cmdpath }$word
      _muster_spec "$cmdpath"
    fi
  done
  COMPREPLY=()
  if ((skip > 0)); then
    # the value of $opt
    _muster_choices "$cmdpath $opt"
    if [[ -n $choices ]]; then
      mapfile -t COMPREPLY < <(compgen -W "$choices" -- "$cur")
    elif [[ " $filevalued " == *" $opt "* ]]; then
      compopt -o filenames 2>/dev/null
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    elif [[ " $dirvalued " == *" $opt "* ]]; then
      compopt -o filenames 2>/dev/null
      mapfile -t COMPREPLY < <(compgen -d -- "$cur")
    fi
  elif [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -W "$subs $argvals" -- "$cur")
  fi
  return 0
}

complete -F _muster muster
`;
}

/** The zsh script: the same walk over \`words\`, with descriptions through _describe, files through _files. */
function zshScript(specs: readonly CommandSpec[]): string {
  // _describe splits 'name:description' at the first unescaped colon.
  const described = (list: readonly { name: string; description: string }[]): string =>
    `(${list.map((e) => quote(`${e.name.replace(/:/g, '\\:')}:${e.description}`)).join(' ')})`;
  const words = (list: readonly string[]): string => `(${list.map(quote).join(' ')})`;
  const spec = specs
    .map((s) =>
      [
        `    (${quote(s.path)})`,
        `      subs=${described(s.subcommands)}`,
        `      flags=${described(s.flags.map((f) => ({ name: f.flag, description: f.description })))}`,
        `      valued=${words(s.valued)}; filevalued=${words(s.fileValued)}; dirvalued=${words(s.dirValued)}; argvals=${words(s.argumentChoices)}`,
        '      ;;',
      ].join('\n'),
    )
    .join('\n');
  const choices = specs.flatMap((s) => s.choices.map((c) => `    (${quote(`${s.path} ${c.flag}`)}) choices=${words(c.values)} ;;`)).join('\n');
  return `#compdef muster
# zsh completion for muster, printed by 'muster completion zsh' from the program's own commands.
# Load it after compinit with: source <(muster completion zsh)
# or install it as _muster in a folder of $fpath (the Debian package uses /usr/share/zsh/vendor-completions).

_muster_spec() {
  case $1 in
${spec}
    (*) subs=(); flags=(); valued=(); filevalued=(); dirvalued=(); argvals=() ;;
  esac
}

_muster_choices() {
  case $1 in
${choices}
    (*) choices=() ;;
  esac
}

_muster() {
  local cmdpath='' word='' opt='' cur=\${words[CURRENT]}
  local -i i skip=0
  local -a subs flags valued filevalued dirvalued argvals choices names
  _muster_spec ''
  for (( i = 2; i < CURRENT; i++ )); do
    word=\${words[i]}
    if (( skip > 0 )); then (( skip-- )); continue; fi
    if [[ $word == -* ]]; then
      if [[ $word != *=* ]] && (( \${valued[(Ie)$word]} )); then opt=$word; skip=1; fi
      continue
    fi
    names=(\${subs%%:*})
    if (( \${names[(Ie)$word]} )); then
      cmdpath=\${cmdpath:+$cmdpath }$word
      _muster_spec "$cmdpath"
    fi
  done
  # zsh keeps '--opt=value' one word: complete the value after the '='.
  if (( skip == 0 )) && [[ $cur == -*=* ]] && (( \${valued[(Ie)\${cur%%=*}]} )); then
    opt=\${cur%%=*}
    compset -P '*='
    skip=1
  fi
  if (( skip > 0 )); then
    _muster_choices "$cmdpath $opt"
    if (( $#choices )); then
      compadd -a choices
    elif (( \${filevalued[(Ie)$opt]} )); then
      _files
    elif (( \${dirvalued[(Ie)$opt]} )); then
      _files -/
    fi
  elif [[ $cur == -* ]]; then
    _describe -t options 'muster option' flags
  else
    _describe -t commands 'muster command' subs
    (( $#argvals )) && compadd -a argvals
  fi
  return 0
}

if [[ $funcstack[1] == _muster ]]; then
  _muster "$@"
else
  compdef _muster muster
fi
`;
}

/** The completion script of `program` for `shell`. */
function completionScript(program: Command, shell: Shell): string {
  const specs = collectSpecs(program);
  return shell === 'bash' ? bashScript(specs) : zshScript(specs);
}

/** Registers completion. */
export function registerCompletion(program: Command, ctx: CliContext, done: Done): void {
  program
    .command('completion')
    .description('print the bash or zsh completion script: source <(muster completion bash)')
    .addArgument(new Argument('<shell>', 'the shell to complete in').choices(SHELLS))
    .action(
      act(done)(async (shell: Shell) => {
        ctx.stdout.write(completionScript(program, shell));
        return 0;
      }),
    );
}
