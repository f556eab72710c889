"""Clients of a running collector over HTTP (standard library only): who is online now
(`trail online --url`), back-end publishing (`trail publish`) and a Bayeux follower
(`trail replay --follow`)."""
