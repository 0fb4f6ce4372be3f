/* fields: the names of rejected fields and why, which a 400 answer lists
 * (the "errors" array). Shared by every validator of untrusted bodies, so
 * that none of them depends on another's module. Plain data. */
#ifndef SFVOPI_CORE_FIELDS_H
#define SFVOPI_CORE_FIELDS_H

#define FIELD_ERRORS_MAX 16

struct field_error {
    const char *field;  /* static */
    const char *reason; /* static */
};

struct field_errors {
    int n;
    struct field_error e[FIELD_ERRORS_MAX];
};

#endif
