;;; print-configs.el --- print kbridge's dape-configs entries as JSON  -*- lexical-binding: t; -*-
;;; Commentary:
;; Run by test/run.sh: loads kbridge-dape.el against the dape stand-in and prints, for
;; every kbridge-* entry, the adapter command and the launch arguments (the keyword part
;; of the entry, which dape sends as the DAP launch request) as one JSON array.
;;; Code:
(require 'json)
(require 'kbridge-dape)

(defun kbridge-test--split (plist)
  "Return (SETTINGS . LAUNCH): dape's own keys and the keyword (launch) keys of PLIST."
  (let (settings launch)
    (while plist
      (let ((key (pop plist)) (value (pop plist)))
        (if (keywordp key)
            (setq launch (append launch (list key value)))
          (setq settings (append settings (list key value))))))
    (cons settings launch)))

(let (out)
  (dolist (entry dape-configs)
    (when (string-prefix-p "kbridge-" (symbol-name (car entry)))
      (let* ((parts (kbridge-test--split (cdr entry)))
             (settings (car parts)))
        (push `((name . ,(symbol-name (car entry)))
                (command . ,(plist-get settings 'command))
                (commandArgs . ,(vconcat (plist-get settings 'command-args)))
                (ensure . ,(symbol-name (plist-get settings 'ensure)))
                (modes . ,(vconcat (mapcar #'symbol-name (plist-get settings 'modes))))
                (launch . ,(json-encode (cdr parts))))
              out))))
  (princ (json-encode (nreverse out)))
  (terpri))
;;; print-configs.el ends here
