# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_llm_rotate_global_optspecs
    string join \n endpoints= db= color= h/help V/version
end

function __fish_llm_rotate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_llm_rotate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_llm_rotate_using_subcommand
    set -l cmd (__fish_llm_rotate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -s h -l help -d 'Print help'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -s V -l version -d 'Print version'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "pick" -d 'Choose an endpoint that fits the request now and reserve it'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "exec" -d 'Pick an endpoint, run a command with it, record what happened, and fail over'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "record" -d 'Settle a reservation with the real usage, or record a call made without pick'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "state" -d 'Show each endpoint\'s usage against its limits'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "reset" -d 'Forget the usage and reservations of endpoints'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "history" -d 'Requests and tokens per endpoint per UTC hour or day (kept 90 days)'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "init" -d 'Write the example endpoints file to start from'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "man" -d 'Print the manual page (roff), from the same definitions as --help'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c llm-rotate -n "__fish_llm_rotate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l tokens -d 'Input tokens the request will use (estimate); `1200`, `4k`, `1_000`' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l tokens-from -d 'Estimate the tokens from the prompt\'s size: FILE\'s bytes / 3, rounded up; `-` for stdin' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l max-output -d 'Completion tokens allowed (`max_tokens`): the estimate\'s output tokens' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l only -d 'Only endpoints whose id matches this glob (`*` any run, `?` one character); repeatable' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l exclude -d 'Skip endpoints whose id matches this glob; repeatable' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l strategy -d 'How to choose among the fitting endpoints of the highest priority' -r -f -a "order\t'The first in file order'
weighted\t'At random, in proportion to the `weight` column'
spread\t'The one with the most of its tightest limit left'
round-robin\t'Each in turn, in file order; the turn is shared by every process'
cheapest\t'The lowest cost of this request at the `price_*` columns; ties in file order'"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l wait -d 'When nothing fits, wait for a slot: at most DURATION (30s, 5m, 1h), or without a value as long as it takes' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l format -d 'Output format' -r -f -a "text\t'The id alone on one line'
json\t'One JSON object with the lease and the endpoint\'s properties'
shell\t'`export LLM_ROTATE_...=\'...\'` lines for `eval`'"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l dry-run -d 'Show what would be chosen; reserve nothing'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -l json -d 'Short for `--format json`'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand pick" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l tokens -d 'Input tokens the request will use (estimate); `1200`, `4k`, `1_000`' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l tokens-from -d 'Estimate the tokens from the prompt\'s size: FILE\'s bytes / 3, rounded up; `-` for stdin' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l max-output -d 'Completion tokens allowed (`max_tokens`): the estimate\'s output tokens' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l only -d 'Only endpoints whose id matches this glob (`*` any run, `?` one character); repeatable' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l exclude -d 'Skip endpoints whose id matches this glob; repeatable' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l strategy -d 'How to choose among the fitting endpoints of the highest priority' -r -f -a "order\t'The first in file order'
weighted\t'At random, in proportion to the `weight` column'
spread\t'The one with the most of its tightest limit left'
round-robin\t'Each in turn, in file order; the turn is shared by every process'
cheapest\t'The lowest cost of this request at the `price_*` columns; ties in file order'"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l wait -d 'When nothing fits, wait for a slot: at most DURATION (30s, 5m, 1h), or without a value as long as it takes' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l attempts -d 'Attempts in all, fail-overs included' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -l stream -d 'Write COMMAND\'s stdout as it comes (streamed responses); no retry once it wrote'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand exec" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l lease -d 'The lease printed by `pick --format json|shell`' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l tokens -d 'Tokens really used (replaces the reservation\'s estimate)' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l usage -d 'Read the tokens used from FILE (`-` for stdin): the response body, JSON or an SSE stream, in the shapes `exec` reads, or a whole number; whatever the status' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l requests -d 'Requests made [default: 1]' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l retry-after -d 'How long the provider asked to wait (its Retry-After): 30, 30s, 2m, or an HTTP date' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l headers -d 'The response\'s headers, as `curl -D` writes them (`-` for stdin): read the provider\'s rate-limit headers and Retry-After' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l add -d 'Record a new call now, even when a reservation is open'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l rate-limited -d 'The call was refused with 429 Too Many Requests: skip the endpoint for a while'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -l failed -d 'The call failed (other than a 429); three in a row skip the endpoint for a while'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand record" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand state" -l format -d 'Output format' -r -f -a "table\t'A table for people'
json\t'An array of objects with the raw numbers'
csv\t'One row per endpoint with the raw numbers and the time of the reading'
prometheus\t'The Prometheus text format, for node_exporter\'s textfile collector'"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand state" -l output -d 'Write to FILE atomically (a temporary file in its folder, then a rename) instead of stdout' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand state" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand state" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand state" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand state" -l json -d 'Short for `--format json`'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand state" -l no-header -d 'CSV without its header row, for appending readings to one file'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand state" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand reset" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand reset" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand reset" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand reset" -l all -d 'Every endpoint in the database'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand reset" -s h -l help -d 'Print help'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand history" -l since -d 'How far back: 24h, 7d, 90d [default: 24h by hour, 30d by day]' -r
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand history" -l by -d 'One row (or point) per UTC hour or day' -r -f -a "hour\t''
day\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand history" -l format -d 'Output format' -r -f -a "table\t'A bar per period, for people'
json\t'An array of endpoints with their periods'
csv\t'endpoint,period_start,requests,tokens'
svg\t'A line chart a browser shows as it is'"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand history" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand history" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand history" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand history" -l json -d 'Short for `--format json`'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand init" -l output -d 'Write to FILE instead' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand init" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand init" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand init" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand init" -l force -d 'Replace a file that is already there'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand man" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand man" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand man" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand man" -s h -l help -d 'Print help'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand completions" -l endpoints -d 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand completions" -l db -d 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]' -r -F
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand completions" -l color -d 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand completions" -s h -l help -d 'Print help'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "pick" -d 'Choose an endpoint that fits the request now and reserve it'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "exec" -d 'Pick an endpoint, run a command with it, record what happened, and fail over'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "record" -d 'Settle a reservation with the real usage, or record a call made without pick'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "state" -d 'Show each endpoint\'s usage against its limits'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "reset" -d 'Forget the usage and reservations of endpoints'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "history" -d 'Requests and tokens per endpoint per UTC hour or day (kept 90 days)'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "init" -d 'Write the example endpoints file to start from'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "man" -d 'Print the manual page (roff), from the same definitions as --help'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c llm-rotate -n "__fish_llm_rotate_using_subcommand help; and not __fish_seen_subcommand_from pick exec record state reset history init man completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
