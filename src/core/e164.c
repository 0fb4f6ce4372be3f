/* e164: normalisation of user-typed phone numbers.
 * The table of country codes is the ITU-T E.164 assignment list (assigned
 * codes only; spare and withdrawn codes such as 388 are not in it). */
#include "core/e164.h"

#include <string.h>

static const char *const cc_table[] = {
    "1",   "7",   "20",  "27",  "30",  "31",  "32",  "33",  "34",  "36",  "39",  "40",  "41",
    "43",  "44",  "45",  "46",  "47",  "48",  "49",  "51",  "52",  "53",  "54",  "55",  "56",
    "57",  "58",  "60",  "61",  "62",  "63",  "64",  "65",  "66",  "81",  "82",  "84",  "86",
    "90",  "91",  "92",  "93",  "94",  "95",  "98",  "211", "212", "213", "216", "218", "220",
    "221", "222", "223", "224", "225", "226", "227", "228", "229", "230", "231", "232", "233",
    "234", "235", "236", "237", "238", "239", "240", "241", "242", "243", "244", "245", "246",
    "247", "248", "249", "250", "251", "252", "253", "254", "255", "256", "257", "258", "260",
    "261", "262", "263", "264", "265", "266", "267", "268", "269", "290", "291", "297", "298",
    "299", "350", "351", "352", "353", "354", "355", "356", "357", "358", "359", "370", "371",
    "372", "373", "374", "375", "376", "377", "378", "379", "380", "381", "382", "383", "385",
    "386", "387", "389", "420", "421", "423", "500", "501", "502", "503", "504", "505", "506",
    "507", "508", "509", "590", "591", "592", "593", "594", "595", "596", "597", "598", "599",
    "670", "672", "673", "674", "675", "676", "677", "678", "679", "680", "681", "682", "683",
    "685", "686", "687", "688", "689", "690", "691", "692", "800", "808", "850", "852", "853",
    "855", "856", "870", "878", "880", "881", "882", "883", "886", "888", "960", "961", "962",
    "963", "964", "965", "966", "967", "968", "970", "971", "972", "973", "974", "975", "976",
    "977", "979", "992", "993", "994", "995", "996", "998",
};

bool e164_cc_assigned(const char *digits, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof(cc_table) / sizeof(cc_table[0]); i++) {
        if (strlen(cc_table[i]) == n && memcmp(cc_table[i], digits, n) == 0)
            return true;
    }
    return false;
}

/* A bare international number starts with an assigned code of 1 to 3 digits.
 * Country codes are prefix-free, so at most one length can match. */
static bool starts_with_cc(const char *d, size_t n)
{
    size_t k;

    for (k = 1; k <= 3 && k <= n; k++) {
        if (e164_cc_assigned(d, k))
            return true;
    }
    return false;
}

bool e164_default_cc_valid(const char *default_cc)
{
    size_t n, i;

    if (!default_cc)
        return false;
    n = strlen(default_cc);
    if (n < 1 || n > 3)
        return false;
    for (i = 0; i < n; i++) {
        if (default_cc[i] < '0' || default_cc[i] > '9')
            return false;
    }
    return e164_cc_assigned(default_cc, n);
}

enum err e164_normalize(const char *in, size_t len, const char *default_cc, char out[E164_MAX])
{
    char s[E164_INPUT_MAX + 1];
    char res[E164_INPUT_MAX + 8];
    size_t n = 0, i, digits, cclen;
    const char *d;

    if (len > E164_INPUT_MAX)
        return ERR_INVALID;
    /* 1. Remove separators. */
    for (i = 0; i < len; i++) {
        char c = in[i];

        if (c == ' ' || c == '\t' || c == '-' || c == '.' || c == '(' || c == ')')
            continue;
        s[n++] = c;
    }
    s[n] = '\0';

    /* 2. A leading 00 becomes +. */
    if (n >= 2 && s[0] == '0' && s[1] == '0') {
        res[0] = '+';
        memcpy(res + 1, s + 2, n - 2);
        n = n - 1;
        res[n] = '\0';
    } else {
        memcpy(res, s, n + 1);
    }

    /* 3. Numbers without + : national or bare international forms. */
    if (res[0] != '+') {
        for (i = 0; i < n; i++) {
            if (res[i] < '0' || res[i] > '9')
                return ERR_INVALID;
        }
        cclen = default_cc ? strlen(default_cc) : 0;
        if (n == 10 || (n == 11 && res[0] == '0')) {
            d = n == 10 ? res : res + 1;
            if (cclen == 0 || cclen > 3)
                return ERR_INVALID;
            memmove(res + 1 + cclen, d, 10);
            res[0] = '+';
            memcpy(res + 1, default_cc, cclen);
            n = 1 + cclen + 10;
            res[n] = '\0';
        } else if (n >= 11 && n <= 15 && starts_with_cc(res, n)) {
            memmove(res + 1, res, n + 1);
            res[0] = '+';
            n++;
        } else {
            return ERR_INVALID;
        }
    }

    /* 4. ^\+[1-9][0-9]{7,14}$ */
    digits = n - 1;
    if (digits < 8 || digits > 15 || res[1] < '1' || res[1] > '9')
        return ERR_INVALID;
    for (i = 1; i < n; i++) {
        if (res[i] < '0' || res[i] > '9')
            return ERR_INVALID;
    }
    memcpy(out, res, n + 1);
    return ERR_OK;
}
