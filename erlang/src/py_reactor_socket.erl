%% @doc The VM's sockets that are handed off: their descriptor and peer,
%% the `client_info' that goes with them, and what the VM has already
%% received on a `gen_tcp' socket that is about to be handed off.
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
-export([fd_and_peer/1, client_info/1, is_socket/1, close/1]).
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

%% @doc `ClientInfo' as the port is sent it: an `addr' given as an IP
%% address tuple or as a string becomes a binary (`<<"127.0.0.1">>').
%% `{error, {bad_client_info, ClientInfo}}' when a key or a value has no
%% Python form ({@link py_reactor_term:convertible/1}).
-spec client_info(map()) -> {ok, map()} | {error, {bad_client_info, map()}}.
client_info(ClientInfo) ->
    ClientInfo1 = case ClientInfo of
        #{addr := Addr} when is_tuple(Addr) ->
            case inet:ntoa(Addr) of
                {error, einval} -> ClientInfo;
                Text -> ClientInfo#{addr := list_to_binary(Text)}
            end;
        #{addr := Addr} when is_list(Addr) ->
            case unicode:characters_to_binary(Addr) of
                Bin when is_binary(Bin) -> ClientInfo#{addr := Bin};
                _ -> ClientInfo
            end;
        _ ->
            ClientInfo
    end,
    case py_reactor_term:convertible(ClientInfo1) of
        true -> {ok, ClientInfo1};
        false -> {error, {bad_client_info, ClientInfo}}
    end.

%% @doc The descriptor of a connected `gen_tcp' or `socket' socket, and
%% what its peer's address gives `client_info': `addr' (a binary), `port'
%% and `type' (`tcp', or `unix' for a local socket). Errors:
%% `{error, {getfd, Reason}}' (a `gen_tcp' socket of the `socket' backend
%% has no descriptor to give) and `{error, {peername, Reason}}'.
-spec fd_and_peer(gen_tcp:socket() | socket:socket())
    -> {ok, non_neg_integer(), map()} | {error, {getfd | peername, term()}}.
fd_and_peer({'$socket', _} = Socket) ->
    case socket:getopt(Socket, otp, fd) of
        {ok, Fd} ->
            case socket:peername(Socket) of
                {ok, #{family := local, path := Path}} ->
                    {ok, Fd, #{addr => text(Path), type => unix}};
                {ok, #{family := Family, addr := Addr, port := PeerPort}}
                        when Family =:= inet; Family =:= inet6 ->
                    {ok, Fd, #{addr => list_to_binary(inet:ntoa(Addr)), port => PeerPort,
                               type => tcp}};
                {ok, Other} ->
                    {ok, Fd, #{addr => iolist_to_binary(io_lib:format("~0p", [Other]))}};
                {error, Reason} ->
                    {error, {peername, Reason}}
            end;
        {error, Reason} ->
            {error, {getfd, Reason}}
    end;
fd_and_peer(Socket) ->
    try inet:getfd(Socket) of
        {ok, Fd} ->
            case inet:peername(Socket) of
                {ok, {local, Path}} ->
                    {ok, Fd, #{addr => text(Path), type => unix}};
                {ok, {Addr, PeerPort}} ->
                    {ok, Fd, #{addr => list_to_binary(inet:ntoa(Addr)), port => PeerPort,
                               type => tcp}};
                {error, Reason} ->
                    {error, {peername, Reason}}
            end;
        {error, Reason} ->
            {error, {getfd, Reason}}
    catch
        error:Reason ->
            {error, {getfd, Reason}}
    end.

%% @doc Closes the VM's socket, of either kind.
-spec close(gen_tcp:socket() | socket:socket()) -> ok.
close({'$socket', _} = Socket) ->
    _ = socket:close(Socket),
    ok;
close(Socket) ->
    gen_tcp:close(Socket).

%% @doc Whether `Term' is an OTP `socket' socket or an `inet_drv' TCP
%% socket (a `gen_tcp' socket of the default backend).
-spec is_socket(term()) -> boolean().
is_socket({'$socket', Ref}) when is_reference(Ref) ->
    true;
is_socket(Port) when is_port(Port) ->
    erlang:port_info(Port, name) =:= {name, "tcp_inet"};
is_socket(_) ->
    false.

%% A local socket's path, as a binary.
text(Atom) when is_atom(Atom) ->
    atom_to_binary(Atom);
text(Data) ->
    case unicode:characters_to_binary(Data) of
        Bin when is_binary(Bin) -> Bin;
        _ -> erlang:error(badarg, [Data])
    end.
