"""Code that more than one of Kennel's deliverables runs, kept in one place: the serving image installs this
package, and the Lambda's zip and its local image copy in the modules they use (deploy/function.py)."""
