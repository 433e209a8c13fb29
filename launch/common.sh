# Shared by launch/*.sh (sourced, not run): the experiments, error exit, and the
# dry-run machinery. `run` reads the caller's `dry_run` variable.

readonly EXPERIMENTS="arc_trm arc_hrm sudoku_trm maze_trm depth_vs_recursion"

die() {
  echo "error: $*" >&2
  exit 2
}

# Prints one word so that a shell reads it back unchanged: as is when it is
# plain, else in single quotes.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Prints a command quoted so that it can be pasted.
show() {
  local word sep=""
  for word in "$@"; do
    printf '%s' "${sep}"; quote "${word}"; sep=" "
  done
  printf '\n'
}

# Runs a command, or prints it (quoted, so it can be pasted) in dry-run.
run() {
  if (( dry_run )); then
    show "$@"
  else
    "$@"
  fi
}
