%% @doc What the VM has already received on a `gen_tcp' socket that is about
%% to be handed off.
%%
%% A `gen_tcp' socket in active mode (OTP's default is `{active, true}')
%% delivers data as `{tcp, Socket, Data}' messages to its controlling
%% process, and the driver may hold more it has read from the kernel. Those
%% bytes are gone from the kernel's buffer: a port handed the descriptor
%% would never read them. {@link take_received/1} makes the socket passive
%% and collects them, in order, so that {@link py_reactor_context:handoff_socket/3}
%% can pass them to the protocol as its first `data_received'.
-module(py_reactor_socket).

-export([take_received/1, put_back/2]).
-export_type([taken/0]).

-opaque taken() :: {Active :: term(), Data :: binary(), Others :: [tuple()]}.
%% What {@link take_received/1} took, for {@link put_back/2}.

%% @doc Makes `Socket' passive and takes what the VM has received on it:
%% the `{tcp, Socket, Data}' messages in the calling process's mailbox (the
%% caller must be the socket's controlling process, as for any handoff),
%% then what the driver holds. Returns the bytes, in order, and what is
%% needed to undo it. `{tcp_closed, Socket}' and `{tcp_error, Socket, _}'
%% messages are taken too (the port sees the end of file or the error
%% itself). Errors: `{error, {packet, Type}}' for a socket that decodes
%% packets (only `{packet, raw}' can be handed off), `{error, {inet, Posix}}'
%% when the socket's options cannot be read or set.
-spec take_received(gen_tcp:socket()) -> {ok, binary(), taken()} | {error, term()}.
take_received(Socket) ->
    case inet:getopts(Socket, [active, packet]) of
        {ok, Opts} ->
            Active = proplists:get_value(active, Opts, false),
            case proplists:get_value(packet, Opts, raw) of
                Raw when Raw =:= raw; Raw =:= 0 ->
                    case inet:setopts(Socket, [{active, false}]) of
                        ok ->
                            {Data, Others} = drain_mailbox(Socket, [], []),
                            Buffered = drain_driver(Socket, []),
                            All = iolist_to_binary([Data, Buffered]),
                            {ok, All, {Active, All, Others}};
                        {error, Reason} ->
                            {error, {inet, Reason}}
                    end;
                Packet ->
                    {error, {packet, Packet}}
            end;
        {error, Reason} ->
            {error, {inet, Reason}}
    end.

%% @doc Undoes {@link take_received/1} after a refused handoff: the bytes go
%% back to the caller's mailbox as one `{tcp, Socket, Data}' message
%% (followed by any `tcp_closed' or `tcp_error' message taken), and the
%% socket's `active' option is restored. Nothing is lost: a passive socket
%% with bytes left in the driver gets them as that message too.
-spec put_back(gen_tcp:socket(), taken()) -> ok.
put_back(Socket, {Active, Data, Others}) ->
    _ = case Data of
        <<>> -> ok;
        _ -> self() ! {tcp, Socket, in_socket_mode(Socket, Data)}
    end,
    _ = [self() ! Msg || Msg <- Others],
    _ = inet:setopts(Socket, [{active, Active}]),
    ok.

drain_mailbox(Socket, Data, Others) ->
    receive
        {tcp, Socket, Bytes} ->
            drain_mailbox(Socket, [Data, to_binary(Bytes)], Others);
        {tcp_closed, Socket} = Msg ->
            drain_mailbox(Socket, Data, [Msg | Others]);
        {tcp_error, Socket, _} = Msg ->
            drain_mailbox(Socket, Data, [Msg | Others]);
        {tcp_passive, Socket} ->
            drain_mailbox(Socket, Data, Others)
    after 0 ->
        {Data, lists:reverse(Others)}
    end.

%% With a timeout of 0 a passive socket returns what the driver holds and
%% never waits for the kernel.
drain_driver(Socket, Acc) ->
    case gen_tcp:recv(Socket, 0, 0) of
        {ok, Bytes} -> drain_driver(Socket, [Acc, to_binary(Bytes)]);
        {error, _} -> Acc
    end.

to_binary(Bytes) when is_binary(Bytes) -> Bytes;
to_binary(Bytes) when is_list(Bytes) -> list_to_binary(Bytes).

in_socket_mode(Socket, Data) ->
    case inet:getopts(Socket, [mode]) of
        {ok, [{mode, list}]} -> binary_to_list(Data);
        _ -> Data
    end.
