%% @doc Frames between a context and its port program: one term each,
%% `term_to_binary/1' on the way out, `binary_to_term/1' on the way in,
%% carried by the port's `{packet, 4}' framing (`docs/protocol.md').
%%
%% A term whose frame is larger than the port reads (`max_frame', which the
%% port announces in its `hello') is refused here, before it is sent, so
%% that the port never sees it.
-module(py_reactor_frame).

-export([send/3, decode/1, default_max/0]).

%% What a port reads at most when its `hello' does not say (16 MiB).
-define(DEFAULT_MAX_FRAME, 16#1000000).

%% @doc The largest frame, in bytes, assumed until the port's `hello' says
%% otherwise.
-spec default_max() -> pos_integer().
default_max() ->
    ?DEFAULT_MAX_FRAME.

%% @doc Sends `Term' to the port as one frame. Errors:
%% `{error, {bad_term, {too_large, Size, MaxFrame}}}' (bytes; nothing is
%% sent) and `{error, port_closed}' (the port is gone or closing; also for
%% `undefined').
-spec send(port() | undefined, term(), pos_integer())
    -> ok | {error, port_closed | {bad_term, {too_large, pos_integer(), pos_integer()}}}.
send(Port, Term, MaxFrame) ->
    Frame = term_to_binary(Term),
    case byte_size(Frame) of
        Size when Size > MaxFrame ->
            {error, {bad_term, {too_large, Size, MaxFrame}}};
        _ ->
            try port_command(Port, Frame) of
                true -> ok
            catch
                error:badarg -> {error, port_closed}
            end
    end.

%% @doc The term of a frame from the port, or `error' when the frame is not
%% a valid external term.
-spec decode(binary()) -> {ok, term()} | error.
decode(Frame) ->
    try binary_to_term(Frame) of
        Term -> {ok, Term}
    catch
        error:badarg -> error
    end.
