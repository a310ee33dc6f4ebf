%% What the application logs reaches a node whose logger nobody configured:
%% each case runs a fresh `erl' OS process with OTP's default logger
%% configuration and reads its standard output.
-module(py_reactor_logging_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [traceback_on_default_handler, opt_out_keeps_default_handler_quiet].

%% A protocol that raises: its traceback is on the node's standard output.
traceback_on_default_handler(Config) ->
    Output = run_node(Config, []),
    ct:log("node output:~n~ts", [Output]),
    match(Output, <<"Traceback (most recent call last)">>),
    match(Output, <<"RuntimeError: visible-traceback">>),
    %% What Python wrote to sys.stderr is a warning: shown too.
    match(Output, <<"written-to-stderr">>),
    match(Output, <<"NODE DONE">>).

%% The application environment turns the filter off: the same events are
%% dropped by the default handler again, as for any other domain.
opt_out_keeps_default_handler_quiet(Config) ->
    Output = run_node(Config, ["-py_reactor", "log_to_default_handler", "false"]),
    ct:log("node output:~n~ts", [Output]),
    match(Output, <<"NODE DONE">>),
    nomatch = binary:match(Output, <<"visible-traceback">>).

match(Output, Text) ->
    case binary:match(Output, Text) of
        nomatch -> ct:fail({not_in_output, Text, Output});
        _ -> ok
    end.

run_node(Config, ExtraArgs) ->
    Dir = ?config(priv_dir, Config),
    ok = file:write_file(filename:join(Dir, "boom_protocol.py"), <<
        "import sys\n"
        "import erlang.reactor as reactor\n"
        "\n"
        "class Boom(reactor.Protocol):\n"
        "    def data_received(self, data):\n"
        "        print('written-to-stderr', file=sys.stderr)\n"
        "        raise RuntimeError('visible-' + 'traceback')\n"
        "\n"
        "reactor.set_protocol_factory(Boom)\n">>),
    Ebin = filename:dirname(code:which(py_reactor_context)),
    Eval = lists:flatten(io_lib:format(
        "{ok, _} = application:ensure_all_started(py_reactor),"
        "{ok, Ctx} = py_reactor_context:start_link(1, worker, #{python_path => [~0p],"
        "    setup_code => <<\"import boom_protocol\">>}),"
        "{ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}]),"
        "{ok, P} = inet:port(L),"
        "{ok, C} = gen_tcp:connect({127, 0, 0, 1}, P, [binary, {active, false}]),"
        "{ok, S} = gen_tcp:accept(L),"
        "ok = py_reactor_context:handoff_socket(Ctx, S, #{}),"
        "ok = gen_tcp:send(C, <<\"boom\">>),"
        "{error, _} = gen_tcp:recv(C, 0, 60000),"
        "ok = py_reactor_context:stop(Ctx),"
        "logger_std_h:filesync(default),"
        "io:format(\"NODE DONE~~n\"),"
        "init:stop().", [Dir])),
    Erl = os:find_executable("erl"),
    Port = open_port({spawn_executable, Erl},
                     [{args, ["-noshell", "-pa", Ebin | ExtraArgs] ++ ["-eval", Eval]},
                      exit_status, stderr_to_stdout, binary, hide]),
    collect(Port, <<>>).

collect(Port, Acc) ->
    receive
        {Port, {data, Data}} -> collect(Port, <<Acc/binary, Data/binary>>);
        {Port, {exit_status, _}} -> Acc
    after 120000 ->
        ct:fail({node_timeout, Acc})
    end.
