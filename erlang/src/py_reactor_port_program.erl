%% @doc The port program of a context as an OS process: where it is, how it
%% is opened, what it must say at start (`hello', then the reply to
%% `setup'), and how it is ended (`stop', waiting, killing).
%%
%% The context ({@link py_reactor_context}) owns the port and decides what
%% happens next; the functions here send and wait. While they wait, every
%% frame that is not the one awaited (a log line, a message Python sends, a
%% `closed' notice) is given to the context's own frame handler, so that
%% nothing the port says during its start or its end is lost.
%%
%% Times are deadlines on the monotonic clock, in milliseconds (see
%% {@link deadline/1}), so that one `start_timeout' bounds the whole start.
-module(py_reactor_port_program).

-export([open/1, await_hello/4, setup_request/3, await_reply/5]).
-export([stop/5, kill/1, closed_reason/2]).
-export([deadline/1, time_left/1]).

-export_type([program/0, deadline/0, on_frame/1]).

-include_lib("kernel/include/logger.hrl").

%% The version of `docs/protocol.md' this side speaks; the port's `hello'
%% must name the same.
-define(PROTOCOL_VERSION, 1).
%% How long to wait for exit_status after SIGKILL, or for the OS process to
%% disappear after the port was closed.
-define(KILL_WAIT, 2000).

-type program() :: #{context := term(),
                     port := port(),
                     os_pid := non_neg_integer(),
                     max_frame := pos_integer()}.
%% A running port program: the context's id (for log lines), the port, the
%% program's OS pid, and the largest frame it reads.

-type deadline() :: integer() | infinity.
%% A time on `erlang:monotonic_time(millisecond)', or `infinity'.

-type on_frame(Acc) :: fun((binary(), Acc) -> Acc).
%% The context's handler of a frame from the port: called, in order, with
%% each frame that is not the one awaited.

%% @doc Opens the port program with the context's (checked) options:
%% `port_executable' (default `priv/py_reactor_port' of this application),
%% `env', `record', `record_bytes' and `python'. The program is told the
%% VM's OS pid, which the auxiliary socket's peer check compares. Errors:
%% `{error, {open_port, Reason, Path}}'.
-spec open(map()) -> {ok, port(), non_neg_integer()} | {error, {open_port, term(), term()}}.
open(Opts) ->
    Exe = maps:get(port_executable, Opts, default_executable()),
    PortOpts = [{packet, 4}, binary, exit_status, use_stdio, hide,
                {args, ["serve", "--vm-pid", os:getpid()
                        | record_args(Opts) ++ python_args(Opts)]},
                {env, maps:get(env, Opts)}],
    try open_port({spawn_executable, Exe}, PortOpts) of
        Port ->
            {os_pid, OsPid} = erlang:port_info(Port, os_pid),
            {ok, Port, OsPid}
    catch
        error:Reason ->
            {error, {open_port, Reason, Exe}}
    end.

record_args(#{record := Path, record_bytes := true}) ->
    ["--record", Path, "--record-bytes"];
record_args(#{record := Path}) ->
    ["--record", Path];
record_args(#{}) ->
    [].

python_args(#{python := Path}) ->
    ["--python", Path];
python_args(#{}) ->
    [].

default_executable() ->
    case code:priv_dir(py_reactor) of
        {error, bad_name} ->
            %% The application is not in the code path as an application
            %% (ebin without an app directory): try the directory of this
            %% module's beam.
            filename:join([filename:dirname(filename:dirname(code:which(?MODULE))),
                           "priv", "py_reactor_port"]);
        Priv ->
            filename:join(Priv, "py_reactor_port")
    end.

%% @doc Waits for the port's first frame, `{hello, #{protocol := 1,
%% socket_path := Path, ...}}', and returns its map. `log' frames before it
%% go to `OnFrame'. Errors: `{bad_hello, Hello}' (another protocol
%% version), the reason the port gives instead of `hello' (`{error, Reason}',
%% when the `python' option names an unusable interpreter),
%% `{unexpected_frame, Term}', `{bad_frame, Frame}', `{timeout, hello}';
%% `{exited, Reason, Acc}' when the program ended (the port is then gone).
-spec await_hello(port(), deadline(), on_frame(Acc), Acc)
    -> {ok, map(), Acc} | {error, term(), Acc} | {exited, py_reactor_port_exit:reason(), Acc}.
await_hello(Port, Deadline, OnFrame, Acc) ->
    receive
        {Port, {data, Frame}} ->
            case py_reactor_frame:decode(Frame) of
                {ok, {hello, Hello = #{protocol := ?PROTOCOL_VERSION, socket_path := _}}} ->
                    {ok, Hello, Acc};
                {ok, {hello, Hello}} ->
                    {error, {bad_hello, Hello}, Acc};
                {ok, {error, Reason}} ->
                    %% The port could not start (the `python' option named
                    %% an unusable interpreter) and said why instead of hello.
                    {error, Reason, Acc};
                {ok, {log, _, _}} ->
                    await_hello(Port, Deadline, OnFrame, OnFrame(Frame, Acc));
                {ok, Term} ->
                    {error, {unexpected_frame, Term}, Acc};
                error ->
                    {error, {bad_frame, Frame}, Acc}
            end;
        {Port, {exit_status, Status}} ->
            {exited, py_reactor_port_exit:reason(Status), Acc}
    after time_left(Deadline) ->
        {error, {timeout, hello}, Acc}
    end.

%% @doc The `setup' request (`docs/protocol.md') for the context `Id' with
%% its checked options: the Python setup, the connection limit and the HTTP
%% options. An `Id' with no Python form is sent as its printed form.
-spec setup_request(pos_integer(), term(), map()) -> {setup, pos_integer(), map()}.
setup_request(Ref, Id, Opts) ->
    SetupOpts = maps:with([setup_code, app_module, app_callable, python_path,
                           max_connections, app_interface, max_request_line,
                           max_header_block, max_header_count, max_body_size,
                           keepalive_timeout, header_timeout, threads, access_log,
                           idle_timeout, multiprocess, lifespan], Opts),
    ContextId = case py_reactor_term:convertible(Id) of
        true -> Id;
        false -> iolist_to_binary(io_lib:format("~0p", [Id]))
    end,
    {setup, Ref, SetupOpts#{context_id => ContextId}}.

%% @doc Waits for the port's reply to the request `Ref' and returns its
%% result; every other frame goes to `OnFrame' meanwhile. `{timeout, Acc}'
%% past `Deadline'; `{exited, Reason, Acc}' when the program ended (the port
%% is then gone).
-spec await_reply(port(), pos_integer(), deadline(), on_frame(Acc), Acc)
    -> {reply, term(), Acc} | {timeout, Acc} | {exited, py_reactor_port_exit:reason(), Acc}.
await_reply(Port, Ref, Deadline, OnFrame, Acc) ->
    receive
        {Port, {data, Frame}} ->
            case py_reactor_frame:decode(Frame) of
                {ok, {reply, Ref, Result}} ->
                    {reply, Result, Acc};
                _Other ->
                    await_reply(Port, Ref, Deadline, OnFrame, OnFrame(Frame, Acc))
            end;
        {Port, {exit_status, Status}} ->
            {exited, py_reactor_port_exit:reason(Status), Acc}
    after time_left(Deadline) ->
        {timeout, Acc}
    end.

%% @doc Ends the port program, whatever state it is in, and returns once its
%% OS process is gone.
%%
%% A program that is set up is asked to stop with `{stop, StopRef}': it
%% closes its connections (calling `connection_lost()') and exits; the
%% notices it sends meanwhile (closed connections, messages Python sends
%% from `connection_lost', logs) go to `OnFrame'. With `StopRef' `none' (the
%% setup has not succeeded, and the port would answer `stop' with
%% `not_set_up') the port is closed instead: end of file on its stdin makes
%% it exit. Either way the program is killed (`SIGKILL') when it has not
%% exited within `Timeout' milliseconds.
-spec stop(program(), pos_integer() | none, timeout(), on_frame(Acc), Acc) -> Acc.
stop(Program = #{port := Port, max_frame := MaxFrame}, StopRef, Timeout, OnFrame, Acc)
        when is_integer(StopRef) ->
    case py_reactor_frame:send(Port, {stop, StopRef}, MaxFrame) of
        ok ->
            await_exit(Program, StopRef, deadline(Timeout), OnFrame, Acc);
        {error, _} ->
            %% The port is closing already: its exit status is on its way.
            await_exit(Program, StopRef, deadline(?KILL_WAIT), OnFrame, Acc)
    end;
stop(#{port := Port, os_pid := OsPid}, none, Timeout, _OnFrame, Acc) ->
    ok = close_port(Port),
    ok = await_os_exit(OsPid, deadline(Timeout)),
    flush_port(Port),
    Acc.

await_exit(Program = #{context := Id, port := Port, os_pid := OsPid}, StopRef, Deadline,
           OnFrame, Acc) ->
    receive
        {Port, {data, Frame}} ->
            case py_reactor_frame:decode(Frame) of
                {ok, {reply, StopRef, _}} ->
                    await_exit(Program, StopRef, Deadline, OnFrame, Acc);
                _Other ->
                    await_exit(Program, StopRef, Deadline, OnFrame, OnFrame(Frame, Acc))
            end;
        {Port, {exit_status, _Status}} ->
            flush_port(Port),
            Acc
    after time_left(Deadline) ->
        ?LOG_WARNING("py_reactor_context ~0p: port program (os pid ~b) did not exit in time; "
                     "killing it", [Id, OsPid]),
        ok = kill(Program),
        Acc
    end.

%% @doc Kills the port program at once (`SIGKILL') and waits, briefly, for
%% it to be gone. The port's messages still in the mailbox are dropped.
-spec kill(program()) -> ok.
kill(#{port := Port, os_pid := OsPid}) ->
    ok = kill_os_pid(OsPid),
    receive
        {Port, {exit_status, _}} -> ok
    after ?KILL_WAIT ->
        ok = close_port(Port),
        ok = await_os_exit(OsPid, deadline(?KILL_WAIT))
    end,
    flush_port(Port).

%% @doc The context's exit reason when its port closed with `Reason' (an
%% ``{'EXIT', Port, Reason}'' message, after a write to a dead program,
%% say): the program's
%% exit status usually follows at once and says more, so it is awaited
%% briefly; `{port_closed, Reason}' without it.
-spec closed_reason(port(), term()) -> py_reactor_port_exit:reason() | {port_closed, term()}.
closed_reason(Port, Reason) ->
    receive
        {Port, {exit_status, Status}} -> py_reactor_port_exit:reason(Status)
    after ?KILL_WAIT ->
        {port_closed, Reason}
    end.

close_port(Port) ->
    try port_close(Port) of
        true -> ok
    catch
        error:badarg -> ok % Already closed.
    end.

flush_port(Port) ->
    receive
        {'EXIT', Port, _} -> flush_port(Port);
        {Port, _} -> flush_port(Port)
    after 0 ->
        ok
    end.

await_os_exit(OsPid, Deadline) ->
    case os_pid_alive(OsPid) of
        false ->
            ok;
        true ->
            case time_left(Deadline) of
                0 ->
                    ok = kill_os_pid(OsPid),
                    wait_os_exit(OsPid, 200);
                _ ->
                    receive after 5 -> ok end,
                    await_os_exit(OsPid, Deadline)
            end
    end.

wait_os_exit(_OsPid, 0) ->
    ok;
wait_os_exit(OsPid, Tries) ->
    case os_pid_alive(OsPid) of
        false -> ok;
        true -> receive after 10 -> wait_os_exit(OsPid, Tries - 1) end
    end.

%% A process that has exited but is not reaped yet (a zombie) counts as gone.
os_pid_alive(OsPid) ->
    case file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat") of
        {ok, Stat} ->
            case string:split(Stat, ")", trailing) of
                [_, <<" Z", _/binary>>] -> false;
                [_, <<" X", _/binary>>] -> false;
                _ -> true
            end;
        {error, _} ->
            false
    end.

kill_os_pid(OsPid) ->
    _ = os:cmd("kill -9 " ++ integer_to_list(OsPid) ++ " 2>/dev/null"),
    ok.

%% @doc The deadline `Timeout' milliseconds from now.
-spec deadline(timeout()) -> deadline().
deadline(infinity) -> infinity;
deadline(Timeout) -> erlang:monotonic_time(millisecond) + Timeout.

%% @doc Milliseconds left until `Deadline' (0 once past), as a `receive'
%% timeout.
-spec time_left(deadline()) -> timeout().
time_left(infinity) -> infinity;
time_left(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).
