%% @doc How a port program ended, said as the context's exit reason, and
%% what callers still waiting for a reply are told.
%%
%% OTP reports a port program's end as an exit status: the program's own
%% status, or 128 plus the number of the signal that killed it. The context
%% exits with `{port_exited, Status}' or `{port_killed, Signal}', `Signal'
%% being the signal's name by Linux numbering (`sigsegv', `sigkill', ...) or
%% its number when it has none here.
-module(py_reactor_port_exit).

-export([reason/1, signal_name/1, caller_reason/1]).

-export_type([reason/0]).

-type reason() :: {port_exited, non_neg_integer()}
                | {port_killed, atom() | pos_integer()}.
%% A port program's end, as the context's exit reason.

%% @doc The exit reason for the exit status `Status' of the port program.
-spec reason(non_neg_integer()) -> reason().
reason(Status) when Status > 128 ->
    {port_killed, signal_name(Status - 128)};
reason(Status) ->
    {port_exited, Status}.

%% @doc What the callers of requests still waiting when the context stops
%% for `Reason' get as `{error, _}': the port's end when it died, `stopped'
%% otherwise.
-spec caller_reason(term()) -> reason() | {port_closed, term()} | stopped.
caller_reason({port_exited, _} = Reason) -> Reason;
caller_reason({port_killed, _} = Reason) -> Reason;
caller_reason({port_closed, _} = Reason) -> Reason;
caller_reason(_Other) -> stopped.

%% @doc The name of the Linux signal number `N' (`sigkill' for 9), or `N'
%% itself for a number with no name here.
-spec signal_name(pos_integer()) -> atom() | pos_integer().
signal_name(1) -> sighup;
signal_name(2) -> sigint;
signal_name(3) -> sigquit;
signal_name(4) -> sigill;
signal_name(5) -> sigtrap;
signal_name(6) -> sigabrt;
signal_name(7) -> sigbus;
signal_name(8) -> sigfpe;
signal_name(9) -> sigkill;
signal_name(10) -> sigusr1;
signal_name(11) -> sigsegv;
signal_name(12) -> sigusr2;
signal_name(13) -> sigpipe;
signal_name(14) -> sigalrm;
signal_name(15) -> sigterm;
signal_name(16) -> sigstkflt;
signal_name(17) -> sigchld;
signal_name(18) -> sigcont;
signal_name(19) -> sigstop;
signal_name(20) -> sigtstp;
signal_name(21) -> sigttin;
signal_name(22) -> sigttou;
signal_name(23) -> sigurg;
signal_name(24) -> sigxcpu;
signal_name(25) -> sigxfsz;
signal_name(26) -> sigvtalrm;
signal_name(27) -> sigprof;
signal_name(28) -> sigwinch;
signal_name(29) -> sigio;
signal_name(30) -> sigpwr;
signal_name(31) -> sigsys;
signal_name(N) -> N.
