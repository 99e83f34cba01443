# zsh -f zsh-complete.zsh SCRIPT OUT LINE...: types each LINE and a TAB into a real
# interactive zsh (zpty) that loaded SCRIPT after compinit; a compadd wrapper
# writes what the completion offers to OUT, one match a line, after a line '@@N'
# for the Nth LINE. Every step waits for the shell's own output, never a delay.
zmodload zsh/zpty || exit 1
script=$1 out=$2
shift 2
zpty z zsh -f -i
zpty -w z "PS1='zpty-prompt> '; unsetopt auto_list list_ambiguous beep; autoload -U compinit && compinit -u -D && source ${(q)script}"
zpty -w z "compadd() { local -a __m; builtin compadd -O __m \"\$@\"; (( \$#__m )) && print -rl -- \$__m >> ${(q)out}; builtin compadd \"\$@\"; }"
local -i n=0
local line x
for line in "$@"; do
  (( n++ ))
  # The TAB goes to a prompt that is up: zle may drop what was typed while the command before still ran.
  zpty -w z "print -r -- @@$n >> ${(q)out}; print -r -- READY-\$(( $n + 1000 ))"
  zpty -r z x "*READY-$(( n + 1000 ))*zpty-prompt> *" || exit 1
  zpty -w -n z "$line"$'\t'
  # Ctrl-U drops the completed line; the marker is printed only once zsh ran the command after it.
  zpty -w -n z $'\C-u'
  zpty -w z "print -r -- DONE-\$(( $n + 2000 ))"
  zpty -r z x "*DONE-$(( n + 2000 ))*" || exit 1
done
zpty -d z
