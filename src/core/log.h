/* log: one line per event on stderr, "ts=... level=... msg=..." followed by
 * key=value pairs. Each line is written with a single write(2), so lines
 * from different threads never interleave. Never pass keys, bodies or auth
 * headers here. Thread-safe. */
#ifndef SFVOPI_CORE_LOG_H
#define SFVOPI_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
enum log_format { LOG_TEXT, LOG_JSON };

/* Sets the minimum level written. Call before starting threads. */
void log_set_level(enum log_level level);
/* Text (key=value) or JSON (one object a line, the same keys; numbers
 * unquoted). Call before starting threads. */
void log_set_format(enum log_format format);
/* Rewrites one key=value line (as log_write makes them) as a JSON object
 * into out. Values keep their log_quote escapes. Exposed for tests. */
size_t log_line_to_json(const char *line, size_t len, char *out, size_t outsz);
/* Parses "debug", "info", "warn", "error", "off". False if unknown. */
bool log_level_parse(const char *s, enum log_level *out);
/* True when a line at this level would be written. */
bool log_enabled(enum log_level level);

/* For the one-shot CLI: when on, lines are not written; the cause of the
 * newest line of level warn or above is kept instead (the value of its err=
 * key, else its msg=), so that the command can name it in its one error
 * line. Call before starting threads. */
void log_hold(bool on);
/* Copies the kept cause to out as printable ASCII on one line (escapes
 * decoded, control bytes as spaces) and forgets it. False if none. */
bool log_held_cause(char *out, size_t outsz);

/* Writes "ts=<now> level=<level> " then the formatted text, then a newline.
 * The text is cut at 2 KiB. */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies in[0..len) to out as a double-quoted string safe for one log line:
 * quotes, backslashes, control and non-ASCII bytes are escaped as \xNN, and
 * the result is cut (ending in "...") to fit outsz. out is always
 * NUL-terminated; outsz must be at least 8. */
void log_quote(char *out, size_t outsz, const char *in, size_t len);

#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
