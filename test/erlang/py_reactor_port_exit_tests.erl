%% EUnit tests of py_reactor_port_exit: a port program's exit status as the
%% context's exit reason, and what waiting callers are told.
-module(py_reactor_port_exit_tests).

-include_lib("eunit/include/eunit.hrl").

status_below_129_is_the_programs_own_test() ->
    ?assertEqual({port_exited, 0}, py_reactor_port_exit:reason(0)),
    ?assertEqual({port_exited, 3}, py_reactor_port_exit:reason(3)),
    ?assertEqual({port_exited, 128}, py_reactor_port_exit:reason(128)).

status_above_128_is_a_signal_by_name_test() ->
    ?assertEqual({port_killed, sigkill}, py_reactor_port_exit:reason(128 + 9)),
    ?assertEqual({port_killed, sigsegv}, py_reactor_port_exit:reason(128 + 11)),
    ?assertEqual({port_killed, sigabrt}, py_reactor_port_exit:reason(128 + 6)),
    %% Real-time signals have no name here: their number.
    ?assertEqual({port_killed, 40}, py_reactor_port_exit:reason(128 + 40)).

callers_learn_how_the_port_ended_or_stopped_test() ->
    [?assertEqual(R, py_reactor_port_exit:caller_reason(R))
     || R <- [{port_exited, 1}, {port_killed, sigkill}, {port_closed, epipe}]],
    [?assertEqual(stopped, py_reactor_port_exit:caller_reason(R))
     || R <- [normal, shutdown, {shutdown, why}, killed]].
