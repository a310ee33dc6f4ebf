%% The `erlang' Python module's way back into the VM: atoms both ways,
%% erlang.whereis, erlang.send to a registered name, erlang.call run by the
%% VM in a fresh process, with the context's other frames kept meanwhile.
-module(py_reactor_erlang_module_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [atoms_round_trip, whereis, send_to_a_name, call, call_errors,
     frames_during_a_call_are_served_after_it].

init_per_testcase(_Case, Config) ->
    process_flag(trap_exit, true),
    Dir = ?config(priv_dir, Config),
    ok = file:write_file(filename:join(Dir, "vm_calls.py"), <<
        "import erlang\n"
        "import erlang.reactor as reactor\n"
        "\n"
        "def echo(x):\n"
        "    return (type(x).__name__, isinstance(x, str), x)\n"
        "\n"
        "class Calls(reactor.Protocol):\n"
        "    def data_received(self, data):\n"
        "        if data.startswith(b'sleep'):\n"
        "            erlang.call('timer', 'sleep', [1000])\n"
        "            self.write_buffer.extend(b'slept')\n"
        "        else:\n"
        "            self.write_buffer.extend(data)\n"
        "        return 'write_pending'\n"
        "\n"
        "reactor.set_protocol_factory(Calls)\n">>),
    {ok, Ctx} = py_reactor_context:start_link(1, worker, #{
        python_path => [Dir],
        setup_code => <<"import erlang\nfrom vm_calls import echo\n">>}),
    [{ctx, Ctx} | Config].

end_per_testcase(_Case, Config) ->
    ok = py_reactor_context:stop(?config(ctx, Config)).

atoms_round_trip(Config) ->
    Ctx = ?config(ctx, Config),
    {ok, ok} = py_reactor_context:eval(Ctx, "erlang.atom('ok')"),
    {ok, {hello, <<"from_python">>}} =
        py_reactor_context:eval(Ctx, "(erlang.Atom('hello'), 'from_python')"),
    {ok, {<<"Atom">>, true, ok}} = py_reactor_context:call(Ctx, '__main__', echo, [ok]),
    {ok, {<<"str">>, true, <<"ok">>}} = py_reactor_context:call(Ctx, '__main__', echo, [<<"ok">>]),
    {ok, {<<"dict">>, false, #{key := [value, {nested, 1}]}}} =
        py_reactor_context:call(Ctx, '__main__', echo, [#{key => [value, {nested, 1}]}]),
    {ok, true} = py_reactor_context:eval(Ctx, "erlang.atom('ok') == 'ok'"),
    {error, {unconvertible, _}} = py_reactor_context:eval(Ctx, "erlang.atom('x' * 256)").

whereis(Config) ->
    Ctx = ?config(ctx, Config),
    true = register(py_reactor_erlang_module_test, self()),
    Self = self(),
    {ok, Self} = py_reactor_context:eval(Ctx, "erlang.whereis('py_reactor_erlang_module_test')"),
    {ok, none} = py_reactor_context:eval(Ctx, "erlang.whereis('nobody_is_registered_here')"),
    {ok, true} = py_reactor_context:eval(Ctx, "isinstance(erlang.whereis('py_reactor_erlang_module_test'), erlang.Pid)").

send_to_a_name(Config) ->
    Ctx = ?config(ctx, Config),
    true = register(py_reactor_erlang_module_test, self()),
    ok = py_reactor_context:exec(Ctx, "erlang.send('py_reactor_erlang_module_test', "
                                      "('hello', erlang.atom('from_python')))"),
    receive
        {<<"hello">>, from_python} -> ok
    after 10000 ->
        ct:fail(no_message)
    end,
    %% A name nobody has: nothing is sent, the context lives on.
    ok = py_reactor_context:exec(Ctx, "erlang.send(erlang.atom('nobody_is_here'), 1)"),
    {ok, 2} = py_reactor_context:eval(Ctx, "1 + 1").

call(Config) ->
    Ctx = ?config(ctx, Config),
    {ok, [3, 2, 1]} = py_reactor_context:eval(Ctx, "erlang.call('lists', 'reverse', [[1, 2, 3]])"),
    Node = node(),
    {ok, Node} = py_reactor_context:eval(Ctx, "erlang.call('erlang', 'node')"),
    %% A fresh process: neither the context nor the caller.
    {ok, Pid} = py_reactor_context:eval(Ctx, "erlang.call('erlang', 'self', [])"),
    true = is_pid(Pid) andalso Pid =/= Ctx andalso Pid =/= self(),
    false = is_process_alive(Pid),
    {ok, {<<"hello">>, world}} =
        py_reactor_context:eval(Ctx, "erlang.call('erlang', 'list_to_tuple', "
                                     "[['hello', erlang.atom('world')]])").

call_errors(Config) ->
    Ctx = ?config(ctx, Config),
    ok = py_reactor_context:exec(Ctx,
        "def outcome(f):\n"
        "    try:\n"
        "        return ('returned', f())\n"
        "    except erlang.ErlangError as e:\n"
        "        return ('ErlangError',) + e.args\n"
        "    except Exception as e:\n"
        "        return (type(e).__name__, str(e))\n"),
    {ok, {<<"ErlangError">>, error, badarith}} =
        py_reactor_context:eval(Ctx, "outcome(lambda: erlang.call('erlang', '/', [1, 0]))"),
    {ok, {<<"ErlangError">>, error, undef}} =
        py_reactor_context:eval(Ctx, "outcome(lambda: erlang.call('no_such_module', 'f'))"),
    {ok, {<<"ErlangError">>, throw, {some, <<"thing">>}}} =
        py_reactor_context:eval(Ctx, "outcome(lambda: erlang.call('erlang', 'throw', "
                                     "[(erlang.atom('some'), 'thing')]))"),
    {ok, {<<"TimeoutError">>, _}} =
        py_reactor_context:eval(Ctx, "outcome(lambda: erlang.call('timer', 'sleep', [10000], "
                                     "timeout=0.2))"),
    {ok, {<<"ValueError">>, _}} =
        py_reactor_context:eval(Ctx, "outcome(lambda: erlang.call('erlang', 'make_ref'))"),
    %% An error reason with no Python form arrives printed.
    {ok, {<<"ErlangError">>, error, Printed}} =
        py_reactor_context:eval(Ctx, "outcome(lambda: erlang.call('erlang', 'error', "
                                     "[erlang.call('erlang', 'self')]))"),
    true = is_pid(Printed) orelse is_binary(Printed),
    {ok, {<<"TypeError">>, _}} =
        py_reactor_context:eval(Ctx, "outcome(lambda: erlang.call('lists', 'reverse', 3))"),
    {ok, 2} = py_reactor_context:eval(Ctx, "1 + 1").

%% A connection's callback waits in erlang.call for a second; meanwhile the
%% VM sends a handoff and a stats request. Both are served once the call
%% returns, in order, and nothing is lost.
frames_during_a_call_are_served_after_it(Config) ->
    Ctx = ?config(ctx, Config),
    {L, _} = py_reactor_test_lib:listen(),
    {C1, S1} = py_reactor_test_lib:conn_pair(L),
    ok = py_reactor_context:handoff_socket(Ctx, S1, #{}),
    ok = gen_tcp:send(C1, <<"sleep">>),
    timer:sleep(200),
    Parent = self(),
    _ = spawn_link(fun() -> Parent ! {stats, py_reactor_context:stats(Ctx)} end),
    {C2, S2} = py_reactor_test_lib:conn_pair(L),
    ok = py_reactor_context:handoff_socket(Ctx, S2, #{}),
    {ok, <<"slept">>} = gen_tcp:recv(C1, 5, 10000),
    ok = py_reactor_test_lib:echo(C2, <<"after the call">>),
    receive
        {stats, #{active_connections := 2, total_connections := 2}} -> ok;
        {stats, Other} -> ct:fail({stats, Other})
    after 10000 ->
        ct:fail(no_stats)
    end.
