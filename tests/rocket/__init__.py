"""Tests of the RocketMQ adapter: remoting protocol and name server."""
