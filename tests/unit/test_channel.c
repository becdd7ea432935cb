/*
 * test_channel.c - frames round trip through files; the reader catches
 * checksum mismatches, truncation, over-size frames and non-frames; file
 * outputs appear only on commit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "channel.h"

static char dir[64];

static int make_dir(void **st)
{
    (void)st;
    strcpy(dir, "/tmp/hf_test_channel_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **st)
{
    (void)st;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void write_stream(const char *path, int nframes)
{
    hf_err e;
    channel *c = NULL;
    assert_int_equal(channel_open_out(path, &c, &e), 0);
    frame_out fo;
    frame_out_init(&fo);
    float data[4] = {1, 2, 3, 4};
    for (int i = 0; i < nframes; i++) {
        frame_begin(&fo, "demo", 2);
        frame_put_u64(&fo, "i", (uint64_t)i);
        frame_put_bin(&fo, "data", data, sizeof data);
        assert_int_equal(channel_send(c, &fo, &e), 0);
    }
    assert_int_equal(channel_send_end(c, (uint64_t)nframes, &e), 0);
    assert_int_equal(channel_commit(c, &e), 0);
    frame_out_free(&fo);
    channel_destroy(&c);
    assert_null(c);
}

static int read_all(const char *path, size_t max_frame, hf_err *e, int *frames)
{
    channel *c = NULL;
    int rc = channel_open_in(path, max_frame, &c, e);
    if (rc)
        return rc;
    frame_in f;
    *frames = 0;
    while ((rc = channel_recv(c, &f, e)) == 0)
        (*frames)++;
    channel_destroy(&c);
    return rc;
}

static void frames_round_trip_through_a_file(void **st)
{
    (void)st;
    char path[128];
    snprintf(path, sizeof path, "%s/rt.frames", dir);
    write_stream(path, 5);
    channel *c = NULL;
    hf_err e;
    assert_int_equal(channel_open_in(path, 0, &c, &e), 0);
    frame_in f;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(channel_recv(c, &f, &e), 0);
        assert_string_equal(f.type, "demo");
        uint64_t v;
        assert_int_equal(frame_get_u64(&f, "i", &v, &e), 0);
        assert_int_equal(v, (uint64_t)i);
        const void *p;
        size_t len;
        assert_int_equal(frame_get_bin(&f, "data", &p, &len, &e), 0);
        assert_int_equal(len, 16);
        assert_int_equal(frame_get_u64(&f, "missing", &v, &e), HF_EOF);
        assert_int_equal(frame_get_str(&f, "i", (char[8]){0}, 8, &e), HF_EDATA);
    }
    assert_int_equal(channel_recv(c, &f, &e), 0);
    assert_string_equal(f.type, "end");
    assert_int_equal(channel_recv(c, &f, &e), HF_EOF);
    channel_destroy(&c);
}

static void flipped_byte_fails_the_checksum_or_decoding(void **st)
{
    (void)st;
    char path[128];
    snprintf(path, sizeof path, "%s/flip.frames", dir);
    write_stream(path, 3);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 30, SEEK_SET); /* inside the first frame's data */
    int ch = fgetc(fp);
    fseek(fp, 30, SEEK_SET);
    fputc(ch ^ 0x01, fp);
    fclose(fp);
    hf_err e;
    int n;
    assert_int_equal(read_all(path, 0, &e, &n), HF_EDATA);
}

static void truncated_frame_is_an_error_not_eof(void **st)
{
    (void)st;
    char path[128];
    snprintf(path, sizeof path, "%s/trunc.frames", dir);
    write_stream(path, 3);
    assert_int_equal(truncate(path, 20), 0);
    hf_err e;
    int n;
    assert_int_equal(read_all(path, 0, &e, &n), HF_EDATA);
    assert_non_null(strstr(e.msg, "truncated"));
}

static void frame_over_the_size_limit_is_refused(void **st)
{
    (void)st;
    char path[128];
    snprintf(path, sizeof path, "%s/big.frames", dir);
    write_stream(path, 1);
    hf_err e;
    int n;
    assert_int_equal(read_all(path, 16, &e, &n), HF_EDATA);
    assert_non_null(strstr(e.msg, "size limit"));
    assert_non_null(strstr(e.msg, "frame 1"));
}

static void garbage_bytes_are_not_frames(void **st)
{
    (void)st;
    char path[128];
    snprintf(path, sizeof path, "%s/garbage", dir);
    FILE *fp = fopen(path, "wb");
    fputs("\xc1\xc1 hello, not msgpack", fp); /* 0xc1 is never valid */
    fclose(fp);
    hf_err e;
    int n;
    assert_int_equal(read_all(path, 0, &e, &n), HF_EDATA);
    snprintf(path, sizeof path, "%s/scalar", dir);
    fp = fopen(path, "wb");
    fputc(0x05, fp); /* a valid MessagePack integer, but not a map */
    fclose(fp);
    assert_int_equal(read_all(path, 0, &e, &n), HF_EDATA);
    assert_non_null(strstr(e.msg, "not a map"));
}

/* A frame type name with control bytes would end up raw in error messages:
 * it is refused with the offending byte named instead. */
static void frame_type_with_control_bytes_is_refused(void **st)
{
    (void)st;
    char path[128];
    snprintf(path, sizeof path, "%s/ctltype", dir);
    FILE *fp = fopen(path, "wb");
    /* {"t": "ve\x1b[2Jc"}: fixmap 1, fixstr "t", fixstr of 6 bytes */
    fwrite("\x81\xa1t\xa6ve\x1b[2J", 1, 10, fp);
    fclose(fp);
    hf_err e;
    int n;
    assert_int_equal(read_all(path, 0, &e, &n), HF_EDATA);
    assert_non_null(strstr(e.msg, "non-printable byte 0x1b"));
}

static void uncommitted_output_leaves_no_file(void **st)
{
    (void)st;
    char path[128], cmd[256];
    snprintf(path, sizeof path, "%s/never.frames", dir);
    hf_err e;
    channel *c = NULL;
    assert_int_equal(channel_open_out(path, &c, &e), 0);
    frame_out fo;
    frame_out_init(&fo);
    frame_begin(&fo, "demo", 0);
    assert_int_equal(channel_send(c, &fo, &e), 0);
    frame_out_free(&fo);
    assert_int_not_equal(access(path, F_OK), 0);
    channel_destroy(&c);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(cmd, sizeof cmd, "ls %s | grep -q never", dir);
    assert_int_not_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_round_trip_through_a_file),
        cmocka_unit_test(flipped_byte_fails_the_checksum_or_decoding),
        cmocka_unit_test(truncated_frame_is_an_error_not_eof),
        cmocka_unit_test(frame_over_the_size_limit_is_refused),
        cmocka_unit_test(garbage_bytes_are_not_frames),
        cmocka_unit_test(frame_type_with_control_bytes_is_refused),
        cmocka_unit_test(uncommitted_output_leaves_no_file),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
