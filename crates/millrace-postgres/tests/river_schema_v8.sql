--
-- PostgreSQL database dump
--



SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: SCHEMA_NAME; Type: SCHEMA; Schema: -; Owner: postgres
--

CREATE SCHEMA SCHEMA_NAME;


ALTER SCHEMA SCHEMA_NAME OWNER TO postgres;

--
-- Name: river_job_state; Type: TYPE; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE TYPE SCHEMA_NAME.river_job_state AS ENUM (
    'available',
    'cancelled',
    'completed',
    'discarded',
    'pending',
    'retryable',
    'running',
    'scheduled'
);


ALTER TYPE SCHEMA_NAME.river_job_state OWNER TO postgres;

--
-- Name: river_job_state_in_bitmask(bit, SCHEMA_NAME.river_job_state); Type: FUNCTION; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE FUNCTION SCHEMA_NAME.river_job_state_in_bitmask(bitmask bit, state SCHEMA_NAME.river_job_state) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT CASE state
        WHEN 'available' THEN get_bit(bitmask, 7)
        WHEN 'cancelled' THEN get_bit(bitmask, 6)
        WHEN 'completed' THEN get_bit(bitmask, 5)
        WHEN 'discarded' THEN get_bit(bitmask, 4)
        WHEN 'pending'   THEN get_bit(bitmask, 3)
        WHEN 'retryable' THEN get_bit(bitmask, 2)
        WHEN 'running'   THEN get_bit(bitmask, 1)
        WHEN 'scheduled' THEN get_bit(bitmask, 0)
        ELSE 0
    END = 1;
$$;


ALTER FUNCTION SCHEMA_NAME.river_job_state_in_bitmask(bitmask bit, state SCHEMA_NAME.river_job_state) OWNER TO postgres;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: river_job; Type: TABLE; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE TABLE SCHEMA_NAME.river_job (
    id bigint NOT NULL,
    state SCHEMA_NAME.river_job_state DEFAULT 'available'::SCHEMA_NAME.river_job_state NOT NULL,
    attempt smallint DEFAULT 0 NOT NULL,
    max_attempts smallint DEFAULT 25 NOT NULL,
    attempted_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    finalized_at timestamp with time zone,
    scheduled_at timestamp with time zone DEFAULT now() NOT NULL,
    priority smallint DEFAULT 1 NOT NULL,
    args jsonb NOT NULL,
    attempted_by text[],
    errors jsonb[],
    kind text NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    queue text DEFAULT 'default'::text NOT NULL,
    tags character varying(255)[] DEFAULT '{}'::character varying[] NOT NULL,
    unique_key bytea,
    unique_states bit(8),
    CONSTRAINT finalized_or_finalized_at_null CHECK ((((finalized_at IS NULL) AND (state <> ALL (ARRAY['cancelled'::SCHEMA_NAME.river_job_state, 'completed'::SCHEMA_NAME.river_job_state, 'discarded'::SCHEMA_NAME.river_job_state]))) OR ((finalized_at IS NOT NULL) AND (state = ANY (ARRAY['cancelled'::SCHEMA_NAME.river_job_state, 'completed'::SCHEMA_NAME.river_job_state, 'discarded'::SCHEMA_NAME.river_job_state]))))),
    CONSTRAINT kind_length CHECK (((char_length(kind) > 0) AND (char_length(kind) < 128))),
    CONSTRAINT max_attempts_is_positive CHECK ((max_attempts > 0)),
    CONSTRAINT priority_in_range CHECK (((priority >= 1) AND (priority <= 4))),
    CONSTRAINT queue_length CHECK (((char_length(queue) > 0) AND (char_length(queue) < 128)))
);


ALTER TABLE SCHEMA_NAME.river_job OWNER TO postgres;

--
-- Name: river_job_id_seq; Type: SEQUENCE; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE SEQUENCE SCHEMA_NAME.river_job_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER TABLE SCHEMA_NAME.river_job_id_seq OWNER TO postgres;

--
-- Name: river_job_id_seq; Type: SEQUENCE OWNED BY; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER SEQUENCE SCHEMA_NAME.river_job_id_seq OWNED BY SCHEMA_NAME.river_job.id;


--
-- Name: river_leader; Type: TABLE; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE UNLOGGED TABLE SCHEMA_NAME.river_leader (
    elected_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    leader_id text NOT NULL,
    name text DEFAULT 'default'::text NOT NULL,
    CONSTRAINT leader_id_length CHECK (((char_length(leader_id) > 0) AND (char_length(leader_id) < 128))),
    CONSTRAINT name_length CHECK ((name = 'default'::text))
);


ALTER TABLE SCHEMA_NAME.river_leader OWNER TO postgres;

--
-- Name: river_migration; Type: TABLE; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE TABLE SCHEMA_NAME.river_migration (
    line text NOT NULL,
    version bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT line_length CHECK (((char_length(line) > 0) AND (char_length(line) < 128))),
    CONSTRAINT version_gte_1 CHECK ((version >= 1))
);


ALTER TABLE SCHEMA_NAME.river_migration OWNER TO postgres;

--
-- Name: river_notification; Type: TABLE; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE TABLE SCHEMA_NAME.river_notification (
    id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    payload text NOT NULL,
    topic text NOT NULL,
    CONSTRAINT topic_length CHECK (((length(topic) > 0) AND (length(topic) < 128)))
);


ALTER TABLE SCHEMA_NAME.river_notification OWNER TO postgres;

--
-- Name: river_notification_id_seq; Type: SEQUENCE; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE SEQUENCE SCHEMA_NAME.river_notification_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER TABLE SCHEMA_NAME.river_notification_id_seq OWNER TO postgres;

--
-- Name: river_notification_id_seq; Type: SEQUENCE OWNED BY; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER SEQUENCE SCHEMA_NAME.river_notification_id_seq OWNED BY SCHEMA_NAME.river_notification.id;


--
-- Name: river_queue; Type: TABLE; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE TABLE SCHEMA_NAME.river_queue (
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    paused_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);


ALTER TABLE SCHEMA_NAME.river_queue OWNER TO postgres;

--
-- Name: river_job id; Type: DEFAULT; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER TABLE ONLY SCHEMA_NAME.river_job ALTER COLUMN id SET DEFAULT nextval('SCHEMA_NAME.river_job_id_seq'::regclass);


--
-- Name: river_notification id; Type: DEFAULT; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER TABLE ONLY SCHEMA_NAME.river_notification ALTER COLUMN id SET DEFAULT nextval('SCHEMA_NAME.river_notification_id_seq'::regclass);


--
-- Name: river_job river_job_pkey; Type: CONSTRAINT; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER TABLE ONLY SCHEMA_NAME.river_job
    ADD CONSTRAINT river_job_pkey PRIMARY KEY (id);


--
-- Name: river_leader river_leader_pkey; Type: CONSTRAINT; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER TABLE ONLY SCHEMA_NAME.river_leader
    ADD CONSTRAINT river_leader_pkey PRIMARY KEY (name);


--
-- Name: river_migration river_migration_pkey1; Type: CONSTRAINT; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER TABLE ONLY SCHEMA_NAME.river_migration
    ADD CONSTRAINT river_migration_pkey1 PRIMARY KEY (line, version);


--
-- Name: river_notification river_notification_pkey; Type: CONSTRAINT; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER TABLE ONLY SCHEMA_NAME.river_notification
    ADD CONSTRAINT river_notification_pkey PRIMARY KEY (id);


--
-- Name: river_queue river_queue_pkey; Type: CONSTRAINT; Schema: SCHEMA_NAME; Owner: postgres
--

ALTER TABLE ONLY SCHEMA_NAME.river_queue
    ADD CONSTRAINT river_queue_pkey PRIMARY KEY (name);


--
-- Name: river_job_args_index; Type: INDEX; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE INDEX river_job_args_index ON SCHEMA_NAME.river_job USING gin (args);


--
-- Name: river_job_kind; Type: INDEX; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE INDEX river_job_kind ON SCHEMA_NAME.river_job USING btree (kind);


--
-- Name: river_job_metadata_index; Type: INDEX; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE INDEX river_job_metadata_index ON SCHEMA_NAME.river_job USING gin (metadata);


--
-- Name: river_job_prioritized_fetching_index; Type: INDEX; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE INDEX river_job_prioritized_fetching_index ON SCHEMA_NAME.river_job USING btree (state, queue, priority, scheduled_at, id);


--
-- Name: river_job_state_and_finalized_at_index; Type: INDEX; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE INDEX river_job_state_and_finalized_at_index ON SCHEMA_NAME.river_job USING btree (state, finalized_at) WHERE (finalized_at IS NOT NULL);


--
-- Name: river_job_unique_idx; Type: INDEX; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE UNIQUE INDEX river_job_unique_idx ON SCHEMA_NAME.river_job USING btree (unique_key) WHERE ((unique_key IS NOT NULL) AND (unique_states IS NOT NULL) AND SCHEMA_NAME.river_job_state_in_bitmask(unique_states, state));


--
-- Name: river_notification_created_at_idx; Type: INDEX; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE INDEX river_notification_created_at_idx ON SCHEMA_NAME.river_notification USING btree (created_at);


--
-- Name: river_notification_topic_id_idx; Type: INDEX; Schema: SCHEMA_NAME; Owner: postgres
--

CREATE INDEX river_notification_topic_id_idx ON SCHEMA_NAME.river_notification USING btree (topic, id);


--
-- PostgreSQL database dump complete
--


