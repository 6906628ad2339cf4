// tests/integration/test_examples_chat.c - examples/chat (fan-out), driven through pipes:
// alice and bob in room r1 see each other's lines and join/leave notices; carol and dave in
// room r2 see each other and nothing of r1, and r1 sees nothing of r2.
#include "test_examples_util.h"

#include <stdlib.h>
#include <string.h>

static ex_proc_t *
s_join(const char *room, const char *nick)
{
    ex_proc_t *client = ex_start(nick, true, "chat/chat", room, nick, NULL);
    // Printed once its queue is bound: from then on it misses nothing said in the room.
    ex_expect_output(client, "* you are ", 1);
    return client;
}

static void
s_leave(ex_proc_t *client)
{
    ex_close_stdin(client); // Ctrl-D
    EX_CHECK(ex_wait_exit(client, EX_WAIT_MS) == 0, "%s did not leave cleanly", client->name);
}

// The client's whole output must be exactly expected.
static void
s_expect_transcript(ex_proc_t *client, const char *expected)
{
    char *out = ex_output(client);
    bool same = strcmp(out, expected) == 0;
    free(out);
    EX_CHECK(same, "%s's transcript differs; expected:\n%s", client->name, expected);
}

static void
test_chat_rooms_see_their_own_lines_only(void **state)
{
    (void)state;
    ex_proc_t *alice = s_join("r1", "alice");
    ex_proc_t *bob = s_join("r1", "bob");
    ex_expect_output(alice, "* bob joined\n", 1);
    ex_proc_t *carol = s_join("r2", "carol");
    ex_proc_t *dave = s_join("r2", "dave");
    ex_expect_output(carol, "* dave joined\n", 1);

    ex_write(bob, "hello from bob\n");
    ex_expect_output(alice, "<bob> hello from bob\n", 1);
    ex_write(alice, "hi bob\n");
    ex_expect_output(bob, "<alice> hi bob\n", 1);
    ex_write(carol, "anyone in r2?\n");
    ex_expect_output(dave, "<carol> anyone in r2?\n", 1);
    ex_write(dave, "me\n");
    ex_expect_output(carol, "<dave> me\n", 1);

    s_leave(bob);
    ex_expect_output(alice, "* bob left\n", 1);
    s_leave(dave);
    ex_expect_output(carol, "* dave left\n", 1);
    s_leave(alice);
    s_leave(carol);

    // Each saw the others of its room, never its own lines back, and nothing of the other room.
    s_expect_transcript(alice, "* you are alice in room r1 (Ctrl-D to leave)\n"
                               "* bob joined\n"
                               "<bob> hello from bob\n"
                               "* bob left\n");
    s_expect_transcript(bob, "* you are bob in room r1 (Ctrl-D to leave)\n"
                             "<alice> hi bob\n");
    s_expect_transcript(carol, "* you are carol in room r2 (Ctrl-D to leave)\n"
                               "* dave joined\n"
                               "<dave> me\n"
                               "* dave left\n");
    s_expect_transcript(dave, "* you are dave in room r2 (Ctrl-D to leave)\n"
                              "<carol> anyone in r2?\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chat_rooms_see_their_own_lines_only, ex_setup,
                                        ex_teardown),
    };
    return cmocka_run_group_tests_name("integration.examples_chat", tests, NULL, NULL);
}
