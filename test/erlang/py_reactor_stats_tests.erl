%% EUnit tests of py_reactor_stats:merge/2: the context's own counts win,
%% refused handoffs add up, counters a port leaves out are 0.
-module(py_reactor_stats_tests).

-include_lib("eunit/include/eunit.hrl").

own() ->
    #{id => 1, mode => worker, os_pid => 4242, max_connections => 100,
      active_connections => 2, total_connections => 5, refused_handoffs => 3}.

own_counts_win_and_refusals_add_up_test() ->
    Port = #{total_requests => 9, bytes_in => 10, bytes_out => 20, python_errors => 1,
             refused_handoffs => 4, active_connections => 99, pending_fds => 0},
    ?assertEqual(#{id => 1, mode => worker, os_pid => 4242, max_connections => 100,
                   active_connections => 2, total_connections => 5, refused_handoffs => 7,
                   total_requests => 9, bytes_in => 10, bytes_out => 20, python_errors => 1,
                   pending_fds => 0},
                 py_reactor_stats:merge(Port, own())).

counters_the_port_leaves_out_are_zero_test() ->
    ?assertMatch(#{total_requests := 0, bytes_in := 0, bytes_out := 0, python_errors := 0,
                   refused_handoffs := 3},
                 py_reactor_stats:merge(#{}, own())).
