"""Code that the API and the workers share: config, database, job kinds and the job lifecycle."""
