DROP TABLE /*schema*/millrace_rate_limit_fetch;
