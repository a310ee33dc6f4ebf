%% EUnit tests of py_reactor_frame: the bound on a frame's size and the
%% decoding of what the port sends, over a real port (`cat' echoes each
%% frame back).
-module(py_reactor_frame_tests).

-include_lib("eunit/include/eunit.hrl").

echo_port() ->
    open_port({spawn_executable, os:find_executable("cat")}, [{packet, 4}, binary]).

a_frame_goes_out_whole_and_decodes_back_test() ->
    Port = echo_port(),
    Term = {handoff, 7, #{addr => <<"127.0.0.1">>, conn_id => 7}},
    ?assertEqual(ok, py_reactor_frame:send(Port, Term, py_reactor_frame:default_max())),
    Frame = receive {Port, {data, F}} -> F after 5000 -> timeout end,
    ?assertEqual({ok, Term}, py_reactor_frame:decode(Frame)),
    true = port_close(Port).

a_frame_over_the_limit_is_refused_before_sending_test() ->
    Port = echo_port(),
    Big = binary:copy(<<0>>, 1000),
    Size = byte_size(term_to_binary(Big)),
    ?assertEqual({error, {bad_term, {too_large, Size, 100}}},
                 py_reactor_frame:send(Port, Big, 100)),
    ?assertEqual(timeout, receive {Port, _} -> sent after 200 -> timeout end),
    true = port_close(Port).

a_closed_port_is_said_so_test() ->
    Port = echo_port(),
    true = port_close(Port),
    ?assertEqual({error, port_closed}, py_reactor_frame:send(Port, hello, 1000)),
    ?assertEqual({error, port_closed}, py_reactor_frame:send(undefined, hello, 1000)).

bytes_that_are_no_term_are_an_error_test() ->
    ?assertEqual(error, py_reactor_frame:decode(<<131, 255, 1, 2>>)),
    ?assertEqual(error, py_reactor_frame:decode(<<>>)).
