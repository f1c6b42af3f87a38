
use builtin;
use str;

set edit:completion:arg-completer[llm-rotate] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'llm-rotate'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'llm-rotate'= {
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand pick 'Choose an endpoint that fits the request now and reserve it'
            cand exec 'Pick an endpoint, run a command with it, record what happened, and fail over'
            cand record 'Settle a reservation with the real usage, or record a call made without pick'
            cand state 'Show each endpoint''s usage against its limits'
            cand reset 'Forget the usage and reservations of endpoints'
            cand history 'Requests and tokens per endpoint per UTC hour or day (kept 90 days)'
            cand init 'Write the example endpoints file to start from'
            cand man 'Print the manual page (roff), from the same definitions as --help'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'llm-rotate;pick'= {
            cand --tokens 'Input tokens the request will use (estimate); `1200`, `4k`, `1_000`'
            cand --tokens-from 'Estimate the tokens from the prompt''s size: FILE''s bytes / 3, rounded up; `-` for stdin'
            cand --max-output 'Completion tokens allowed (`max_tokens`): the estimate''s output tokens'
            cand --only 'Only endpoints whose id matches this glob (`*` any run, `?` one character); repeatable'
            cand --exclude 'Skip endpoints whose id matches this glob; repeatable'
            cand --strategy 'How to choose among the fitting endpoints of the highest priority'
            cand --wait 'When nothing fits, wait for a slot: at most DURATION (30s, 5m, 1h), or without a value as long as it takes'
            cand --format 'Output format'
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand --dry-run 'Show what would be chosen; reserve nothing'
            cand --json 'Short for `--format json`'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'llm-rotate;exec'= {
            cand --tokens 'Input tokens the request will use (estimate); `1200`, `4k`, `1_000`'
            cand --tokens-from 'Estimate the tokens from the prompt''s size: FILE''s bytes / 3, rounded up; `-` for stdin'
            cand --max-output 'Completion tokens allowed (`max_tokens`): the estimate''s output tokens'
            cand --only 'Only endpoints whose id matches this glob (`*` any run, `?` one character); repeatable'
            cand --exclude 'Skip endpoints whose id matches this glob; repeatable'
            cand --strategy 'How to choose among the fitting endpoints of the highest priority'
            cand --wait 'When nothing fits, wait for a slot: at most DURATION (30s, 5m, 1h), or without a value as long as it takes'
            cand --attempts 'Attempts in all, fail-overs included'
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand --stream 'Write COMMAND''s stdout as it comes (streamed responses); no retry once it wrote'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'llm-rotate;record'= {
            cand --lease 'The lease printed by `pick --format json|shell`'
            cand --tokens 'Tokens really used (replaces the reservation''s estimate)'
            cand --usage 'Read the tokens used from FILE (`-` for stdin): the response body, JSON or an SSE stream, in the shapes `exec` reads, or a whole number; whatever the status'
            cand --requests 'Requests made [default: 1]'
            cand --retry-after 'How long the provider asked to wait (its Retry-After): 30, 30s, 2m, or an HTTP date'
            cand --headers 'The response''s headers, as `curl -D` writes them (`-` for stdin): read the provider''s rate-limit headers and Retry-After'
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand --add 'Record a new call now, even when a reservation is open'
            cand --rate-limited 'The call was refused with 429 Too Many Requests: skip the endpoint for a while'
            cand --failed 'The call failed (other than a 429); three in a row skip the endpoint for a while'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'llm-rotate;state'= {
            cand --format 'Output format'
            cand --output 'Write to FILE atomically (a temporary file in its folder, then a rename) instead of stdout'
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand --json 'Short for `--format json`'
            cand --no-header 'CSV without its header row, for appending readings to one file'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'llm-rotate;reset'= {
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand --all 'Every endpoint in the database'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'llm-rotate;history'= {
            cand --since 'How far back: 24h, 7d, 90d [default: 24h by hour, 30d by day]'
            cand --by 'One row (or point) per UTC hour or day'
            cand --format 'Output format'
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand --json 'Short for `--format json`'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'llm-rotate;init'= {
            cand --output 'Write to FILE instead'
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand --force 'Replace a file that is already there'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'llm-rotate;man'= {
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'llm-rotate;completions'= {
            cand --endpoints 'Endpoints file: CSV or a Markdown table [default: endpoints.csv in the user config directory] [env: LLM_ROTATE_ENDPOINTS]'
            cand --db 'Usage database [default: usage.sqlite3 in the user cache directory] [env: LLM_ROTATE_DB]'
            cand --color 'Colour in tables: auto (on a terminal, without NO_COLOR), always or never'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'llm-rotate;help'= {
            cand pick 'Choose an endpoint that fits the request now and reserve it'
            cand exec 'Pick an endpoint, run a command with it, record what happened, and fail over'
            cand record 'Settle a reservation with the real usage, or record a call made without pick'
            cand state 'Show each endpoint''s usage against its limits'
            cand reset 'Forget the usage and reservations of endpoints'
            cand history 'Requests and tokens per endpoint per UTC hour or day (kept 90 days)'
            cand init 'Write the example endpoints file to start from'
            cand man 'Print the manual page (roff), from the same definitions as --help'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'llm-rotate;help;pick'= {
        }
        &'llm-rotate;help;exec'= {
        }
        &'llm-rotate;help;record'= {
        }
        &'llm-rotate;help;state'= {
        }
        &'llm-rotate;help;reset'= {
        }
        &'llm-rotate;help;history'= {
        }
        &'llm-rotate;help;init'= {
        }
        &'llm-rotate;help;man'= {
        }
        &'llm-rotate;help;completions'= {
        }
        &'llm-rotate;help;help'= {
        }
    ]
    $completions[$command]
}
