%% EUnit tests of py_reactor_recording:parse/1 and read/1 on recordings built
%% here, byte by byte, in the format of docs/recording.md.
-module(py_reactor_recording_tests).

-include_lib("eunit/include/eunit.hrl").

%% Helpers.

%% One record: a 32-bit big-endian length and the bytes.
rec(Bytes) when is_binary(Bytes) ->
    <<(byte_size(Bytes)):32/big, Bytes/binary>>.

term(Term) ->
    rec(term_to_binary(Term)).

header() ->
    header(#{started => 1700000000000000, os_pid => 4242, connection_bytes => true}).

header(Info) ->
    term({py_reactor_recording, 1, Info}).

%% The records of a short, complete session, and what parse/1 makes of them.
session() ->
    Setup = {setup, 1, #{setup_code => <<"import echo_protocol\n">>, max_connections => 100}},
    Handoff = {handoff, 1, #{conn_id => 1, addr => <<"127.0.0.1">>, port => 5555, type => tcp}},
    Raw = [{in, 10, term_to_binary(Setup)},
           {out, 20, term_to_binary({reply, 1, ok})},
           {fd, 30, 1, tcp, 12},
           {in, 31, term_to_binary(Handoff)},
           {read, 40, 1, <<"hello">>},
           {write, 41, 1, <<"hello">>},
           {in, 45, <<"not a term">>},
           {out, 46, term_to_binary({frame_error, <<"not a valid term">>})},
           {in_skipped, 47, 20000000},
           {read, 50, 1, <<>>},
           {out, 51, term_to_binary({closed, 1, eof})},
           {in, 60, term_to_binary({stop, 2})},
           {out, 61, term_to_binary({reply, 2, ok})},
           {'end', 62, stopped}],
    Decoded = [{in, 10, Setup},
               {out, 20, {reply, 1, ok}},
               {fd, 30, 1, tcp, 12},
               {in, 31, Handoff},
               {read, 40, 1, <<"hello">>},
               {write, 41, 1, <<"hello">>},
               {in, 45, {invalid, <<"not a term">>}},
               {out, 46, {frame_error, <<"not a valid term">>}},
               {in_skipped, 47, 20000000},
               {read, 50, 1, <<>>},
               {out, 51, {closed, 1, eof}},
               {in, 60, {stop, 2}},
               {out, 61, {reply, 2, ok}},
               {'end', 62, stopped}],
    {Raw, Decoded}.

file_of(Terms) ->
    iolist_to_binary([header() | [term(T) || T <- Terms]]).

%% An atom in external format, written by hand so that this VM has never
%% seen it before parse/1 runs.
fresh_atom_ext(Name) ->
    <<119, (byte_size(Name)), Name/binary>>.

fresh_name() ->
    iolist_to_binary(["py_reactor_never_seen_",
                      integer_to_list(erlang:unique_integer([positive])),
                      "_", integer_to_list(os:system_time())]).

%% Tests.

valid_file_test() ->
    {Raw, Decoded} = session(),
    ?assertEqual({ok, #{header => #{started => 1700000000000000, os_pid => 4242,
                                    connection_bytes => true},
                        records => Decoded,
                        truncated => false}},
                 py_reactor_recording:parse(file_of(Raw))).

header_only_test() ->
    ?assertEqual({ok, #{header => #{connection_bytes => false}, records => [],
                        truncated => false}},
                 py_reactor_recording:parse(header(#{connection_bytes => false}))).

%% A recording made by another VM holds atoms this one has not created yet
%% (the header's own keys, notice names, close reasons, ...): they must be
%% read, not refused.
atoms_unknown_to_this_vm_test() ->
    Key = fresh_name(),
    Reason = fresh_name(),
    Frame = <<131, 104, 3, (fresh_atom_ext(<<"closed">>))/binary, 97, 7,
              (fresh_atom_ext(Reason))/binary>>,
    ?assertError(badarg, binary_to_existing_atom(Key)),
    ?assertError(badarg, binary_to_existing_atom(Reason)),
    Header = rec(<<131, 104, 3, (fresh_atom_ext(<<"py_reactor_recording">>))/binary, 97, 1,
                   116, 1:32/big, (fresh_atom_ext(Key))/binary, 97, 1>>),
    Out = term({out, 5, Frame}),
    {ok, #{header := HeaderMap, records := Records, truncated := false}} =
        py_reactor_recording:parse(<<Header/binary, Out/binary>>),
    ?assertEqual(#{binary_to_existing_atom(Key) => 1}, HeaderMap),
    ?assertEqual([{out, 5, {closed, 7, binary_to_existing_atom(Reason)}}], Records).

%% The port died while writing its last record: what precedes it is
%% returned, and the offset where the incomplete record starts.
truncated_last_record_test_() ->
    {Raw, Decoded} = session(),
    Complete = file_of(lists:droplast(Raw)),
    Last = term(lists:last(Raw)),
    Offset = byte_size(Complete),
    Expected = {ok, #{header => #{started => 1700000000000000, os_pid => 4242,
                                  connection_bytes => true},
                      records => lists:droplast(Decoded),
                      truncated => Offset}},
    [{"cut in the body", ?_assertEqual(Expected, py_reactor_recording:parse(
                              <<Complete/binary, (binary:part(Last, 0, byte_size(Last) - 1))/binary>>))},
     {"cut in the length", ?_assertEqual(Expected, py_reactor_recording:parse(
                                <<Complete/binary, (binary:part(Last, 0, 2))/binary>>))},
     {"only the length", ?_assertEqual(Expected, py_reactor_recording:parse(
                              <<Complete/binary, (binary:part(Last, 0, 4))/binary>>))},
     {"a length past the end, within the record limit",
      ?_assertEqual(Expected, py_reactor_recording:parse(
                                <<Complete/binary, 1000000:32/big, "abc">>))}].

bad_header_test_() ->
    [{"not a recording", ?_assertEqual({error, {no_header, 0}},
                                       py_reactor_recording:parse(<<"this is not a recording">>))},
     {"empty", ?_assertEqual({error, {no_header, 0}}, py_reactor_recording:parse(<<>>))},
     {"header cut short", ?_assertEqual({error, {no_header, 0}},
                                        py_reactor_recording:parse(binary:part(header(), 0, 10)))},
     {"another term first", ?_assertEqual({error, {no_header, 0}},
                                          py_reactor_recording:parse(term({in, 0, <<>>})))},
     {"header info not a map", ?_assertEqual({error, {no_header, 0}},
                                             py_reactor_recording:parse(
                                               term({py_reactor_recording, 1, []})))},
     {"header not a term", ?_assertEqual({error, {no_header, 0}},
                                         py_reactor_recording:parse(rec(<<1, 2, 3>>)))}].

unsupported_version_test_() ->
    [?_assertEqual({error, {unsupported_version, V}},
                   py_reactor_recording:parse(
                     iolist_to_binary([term({py_reactor_recording, V, #{}}),
                                       term({'end', 1, stopped})])))
     || V <- [0, 2, 99]].

%% Damage in the middle is an error naming the offset of the bad record,
%% not a truncation: the records after it are there but cannot be trusted.
bad_term_in_the_middle_test_() ->
    {Raw, _} = session(),
    {Before, After} = lists:split(4, Raw),
    Prefix = file_of(Before),
    Offset = byte_size(Prefix),
    Suffix = iolist_to_binary([term(T) || T <- After]),
    Damaged = fun(Bad) -> <<Prefix/binary, Bad/binary, Suffix/binary>> end,
    Term = term_to_binary({read, 1, 1, <<"x">>}),
    [{"not a term", ?_assertEqual({error, {bad_term, Offset}},
                                  py_reactor_recording:parse(Damaged(rec(<<"garbage!">>))))},
     {"empty record", ?_assertEqual({error, {bad_term, Offset}},
                                    py_reactor_recording:parse(Damaged(rec(<<>>))))},
     {"a term with trailing bytes", ?_assertEqual({error, {bad_term, Offset}},
                                                  py_reactor_recording:parse(
                                                    Damaged(rec(<<Term/binary, 0>>))))},
     {"a term cut short", ?_assertEqual({error, {bad_term, Offset}},
                                        py_reactor_recording:parse(
                                          Damaged(rec(binary:part(Term, 0, byte_size(Term) - 1)))))},
     {"a term that is no record", ?_assertEqual({error, {bad_record, Offset}},
                                                py_reactor_recording:parse(
                                                  Damaged(term({bogus, 1, 2}))))},
     {"bytes that are not a binary", ?_assertEqual({error, {bad_record, Offset}},
                                                   py_reactor_recording:parse(
                                                     Damaged(term({read, 1, 1, "list"}))))},
     {"an out frame that is not a term", ?_assertEqual({error, {bad_record, Offset}},
                                                       py_reactor_recording:parse(
                                                         Damaged(term({out, 1, <<"xx">>}))))}].

read_test_() ->
    {setup,
     fun() ->
             Dir = filename:join(filename:basedir(user_cache, "py_reactor_tests"),
                                 integer_to_list(erlang:unique_integer([positive]))),
             ok = filelib:ensure_dir(filename:join(Dir, "x")),
             Dir
     end,
     fun(Dir) -> file:del_dir_r(Dir) end,
     fun(Dir) ->
             Path = filename:join(Dir, "session.rec"),
             {Raw, Decoded} = session(),
             ok = file:write_file(Path, file_of(Raw)),
             [?_assertMatch({ok, #{records := Decoded, truncated := false}},
                            py_reactor_recording:read(Path)),
              ?_assertMatch({ok, #{records := Decoded}},
                            py_reactor_recording:read(list_to_binary(Path))),
              ?_assertEqual({error, {file, enoent}},
                            py_reactor_recording:read(filename:join(Dir, "missing.rec")))]
     end}.

%% A length over the largest record the port writes is damage, not a record
%% cut short: the reader refuses it as the port's replay does.
forged_length_is_refused_test() ->
    Header = header(),
    ?assertEqual({error, {too_large, byte_size(Header)}},
                 py_reactor_recording:parse(<<Header/binary, 16#7fffffff:32/big, "x">>)).
